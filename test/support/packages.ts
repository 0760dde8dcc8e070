/**
 * The published packages as a user gets them: `npm pack` tarballs installed into fresh apps outside the repository
 * (never through its node_modules), with the environment an app's shell would have. Shared by the consumer tests
 * (test/consumers.test.ts) and the footprint benchmark (bench/install.ts).
 */
import { cpSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { ROOT } from './fixtures.ts';

/** The three workspace packages by name -> their tarball path. */
export interface Tarballs {
  core: string;
  runtime: string;
  capsnet: string;
}

/**
 * The environment of a user's shell: none of `npm test`'s npm_* variables (they would carry this repository's
 * .npmrc, e.g. its CUDA skip, and its prefix) and no NODE_OPTIONS (the repository's source condition). Pass it
 * with execa's `extendEnv: false`, or the parent's variables are merged back in.
 */
export function appEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (/^npm_/i.test(k) || k === 'NODE_OPTIONS' || k === 'INIT_CWD') continue;
    env[k] = v;
  }
  return { ...env, ...extra };
}

/** `npm pack --workspaces` from the repository root (each package builds itself in prepack) into a fresh folder. */
export async function packWorkspaces(dest = mkdtempSync(join(tmpdir(), 'capsnet-pack-'))): Promise<Tarballs> {
  mkdirSync(dest, { recursive: true });
  await execa('npm', ['pack', '--workspaces', '--pack-destination', dest, '--loglevel=error'], { cwd: ROOT, env: appEnv(), extendEnv: false, stdout: 'ignore', stderr: 'pipe' });
  const files = readdirSync(dest);
  const find = (re: RegExp) => {
    const f = files.find((name) => re.test(name));
    if (!f) throw new Error(`npm pack wrote no tarball matching ${re} in ${dest} (it wrote: ${files.join(', ')})`);
    return join(dest, f);
  };
  return { core: find(/^capsnet-onnx-core-.*\.tgz$/), runtime: find(/^capsnet-onnx-runtime-.*\.tgz$/), capsnet: find(/^capsnet-onnx-\d.*\.tgz$/) };
}

export interface InstalledApp {
  dir: string;
  /** Wall time of `npm install`, in ms. */
  installMs: number;
}

/**
 * A fresh app in the OS temp folder: `template` (a folder under test/consumers/apps, optional) copied in, a
 * package.json with these dependencies, then `npm install` with onnxruntime-node's CUDA download skipped the
 * documented way (ONNXRUNTIME_NODE_INSTALL=skip), offline-first from npm's cache.
 */
export async function installApp(
  name: string,
  dependencies: Record<string, string>,
  options: { template?: string; devDependencies?: Record<string, string>; scripts?: Record<string, string> } = {},
): Promise<InstalledApp> {
  const dir = mkdtempSync(join(tmpdir(), `capsnet-app-${name}-`));
  if (options.template) cpSync(join(ROOT, 'test', 'consumers', 'apps', options.template), dir, { recursive: true });
  const pkg = { name: `capsnet-consumer-${name}`, private: true, type: 'module', scripts: options.scripts ?? {}, dependencies, devDependencies: options.devDependencies ?? {} };
  writeFileSync(join(dir, 'package.json'), JSON.stringify(pkg, null, 2));
  const started = performance.now();
  await execa('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', '--loglevel=error'], {
    cwd: dir,
    env: appEnv({ ONNXRUNTIME_NODE_INSTALL: 'skip' }), extendEnv: false,
    stdout: 'ignore',
    stderr: 'pipe',
  });
  return { dir, installMs: performance.now() - started };
}

/** Size of node_modules (bytes of regular files, links not followed) and how many packages it holds. */
export function footprint(appDir: string): { bytes: number; packages: number } {
  let bytes = 0;
  let packages = 0;
  const walk = (dir: string) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) walk(path);
      else if (entry.isFile()) bytes += lstatSync(path).size;
    }
  };
  const countPackages = (nodeModules: string) => {
    for (const entry of readdirSync(nodeModules, { withFileTypes: true })) {
      if (!entry.isDirectory() || entry.name.startsWith('.')) continue;
      const path = join(nodeModules, entry.name);
      if (entry.name.startsWith('@')) {
        for (const scoped of readdirSync(path, { withFileTypes: true })) {
          if (scoped.isDirectory()) countPackage(join(path, scoped.name));
        }
      } else countPackage(path);
    }
  };
  const countPackage = (path: string) => {
    packages++;
    const nested = join(path, 'node_modules');
    try {
      if (lstatSync(nested).isDirectory()) countPackages(nested);
    } catch {
      // no nested node_modules
    }
  };
  const root = join(appDir, 'node_modules');
  walk(root);
  countPackages(root);
  return { bytes, packages };
}

/** A file: dependency on a tarball. */
export const tgz = (path: string) => `file:${path}`;

/** Write a file, creating its folder. */
export function writeAppFile(dir: string, name: string, contents: string | Uint8Array): void {
  mkdirSync(join(dir, name, '..'), { recursive: true });
  writeFileSync(join(dir, name), contents);
}
