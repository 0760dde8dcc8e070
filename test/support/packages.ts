/**
 * The published packages as a user gets them: `npm pack` tarballs installed into fresh apps outside the repository
 * (never through its node_modules), with the environment an app's shell would have. Shared by the consumer tests
 * (test/e2e/consumers.test.ts) and the footprint benchmark (bench/install.ts).
 */
import { cpSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import semver from 'semver';
import { ROOT } from './fixtures.ts';

/** The runnable examples (examples/<name>/), which the consumer tests install from the tarballs and run. */
export const EXAMPLES = join(ROOT, 'examples');

/** An example's package.json scripts: the commands its README tells a user to run. */
export function exampleScripts(name: string): Record<string, string> {
  return (JSON.parse(readFileSync(join(EXAMPLES, name, 'package.json'), 'utf8')) as { scripts?: Record<string, string> }).scripts ?? {};
}

/** The three workspace packages by name -> their tarball path. */
export interface Tarballs {
  core: string;
  runtime: string;
  mnist: string;
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
  await execa('npm', ['pack', '--workspaces', '--pack-destination', dest, '--loglevel=error'], {
    cwd: ROOT,
    env: appEnv(),
    extendEnv: false,
    stdout: 'ignore',
    stderr: 'pipe',
  });
  const files = readdirSync(dest);
  const find = (re: RegExp) => {
    const f = files.find((name) => re.test(name));
    if (!f) throw new Error(`npm pack wrote no tarball matching ${re} in ${dest} (it wrote: ${files.join(', ')})`);
    return join(dest, f);
  };
  return {
    core: find(/^capsnet-onnx-core-.*\.tgz$/),
    runtime: find(/^capsnet-onnx-runtime-.*\.tgz$/),
    mnist: find(/^capsnet-onnx-mnist-.*\.tgz$/),
    capsnet: find(/^capsnet-onnx-\d.*\.tgz$/),
  };
}

export interface InstalledApp {
  dir: string;
  /** Wall time of `npm install`, in ms. */
  installMs: number;
}

/** The workspace packages' folder names under packages/ -> their package names. */
export const WORKSPACES = { core: '@capsnet-onnx/core', runtime: '@capsnet-onnx/runtime', mnist: '@capsnet-onnx/mnist', capsnet: 'capsnet-onnx' } as const;
export type Workspace = keyof typeof WORKSPACES;

/** One version range a workspace package declares (dependencies and peerDependencies), workspace siblings aside. */
export interface DeclaredRange {
  declarer: string;
  name: string;
  range: string;
  /** A peer dependency: the app chooses whether to install it. */
  peer: boolean;
}

/** The ranges the given workspace packages declare, from their package.json. */
export function declaredRanges(workspaces: Workspace[]): DeclaredRange[] {
  const out: DeclaredRange[] = [];
  for (const w of workspaces) {
    const manifest = JSON.parse(readFileSync(join(ROOT, 'packages', w, 'package.json'), 'utf8')) as Record<string, Record<string, string> | undefined>;
    for (const field of ['dependencies', 'peerDependencies', 'optionalDependencies'] as const) {
      for (const [name, range] of Object.entries(manifest[field] ?? {})) {
        if (Object.values(WORKSPACES).includes(name as never)) continue;
        // tfjs-node(-gpu) download libtensorflow at install and cannot install here: optional, never installed.
        if (field === 'optionalDependencies') continue;
        out.push({ declarer: WORKSPACES[w], name, range, peer: field === 'peerDependencies' });
      }
    }
  }
  return out;
}

/**
 * The lowest version of each range, as direct dependencies of an app: npm places them at the top of node_modules
 * and the packages that declare the ranges reuse them (a satisfying top-level copy is never duplicated), so the
 * app runs our packages against the oldest versions they admit. Two ranges on one package: the higher minimum.
 */
export function lowestVersions(ranges: DeclaredRange[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const { name, range } of ranges) {
    const low = semver.minVersion(range)!.version;
    if (!out[name] || semver.gt(low, out[name]!)) out[name] = low;
  }
  return out;
}

/** The newest version the registry has today within `range` (asked of the registry, not npm's cache). */
export async function newestInRange(name: string, range: string): Promise<string> {
  const { stdout } = await execa('npm', ['view', name, 'versions', '--json', '--prefer-online'], { env: appEnv(), extendEnv: false });
  const versions = JSON.parse(stdout) as string[] | string;
  const newest = semver.maxSatisfying(Array.isArray(versions) ? versions : [versions], range);
  if (!newest) throw new Error(`the registry has no version of ${name} in ${range}`);
  return newest;
}

/**
 * The version of `name` that `declarer` (installed in the app) gets, by Node's lookup: its own node_modules, then
 * the app's. undefined when not installed.
 */
export function resolvedVersion(appDir: string, declarer: string, name: string): string | undefined {
  for (const dir of [join(appDir, 'node_modules', declarer, 'node_modules', name), join(appDir, 'node_modules', name)]) {
    const manifest = join(dir, 'package.json');
    if (existsSync(manifest)) return (JSON.parse(readFileSync(manifest, 'utf8')) as { version: string }).version;
  }
  return undefined;
}

/**
 * A fresh app in the OS temp folder: `template` (an example under examples/, optional) copied in, a
 * package.json with these dependencies (the example's own package.json is replaced: its ranges name the registry's
 * packages, the app's name the tarballs), then `npm install` with onnxruntime-node's CUDA download skipped the
 * documented way (ONNXRUNTIME_NODE_INSTALL=skip). Offline-first from npm's cache, unless `preferOnline`: an app
 * that must get the newest versions published today asks the registry (a warm cache can hold stale metadata).
 */
export async function installApp(
  name: string,
  dependencies: Record<string, string>,
  options: {
    template?: string;
    devDependencies?: Record<string, string>;
    scripts?: Record<string, string>;
    preferOnline?: boolean;
    overrides?: Record<string, string>;
  } = {},
): Promise<InstalledApp> {
  const dir = mkdtempSync(join(tmpdir(), `capsnet-app-${name}-`));
  if (options.template) cpSync(join(EXAMPLES, options.template), dir, { recursive: true });
  const pkg = {
    name: `capsnet-consumer-${name}`,
    private: true,
    type: 'module',
    scripts: options.scripts ?? {},
    dependencies,
    devDependencies: options.devDependencies ?? {},
    ...(options.overrides ? { overrides: options.overrides } : {}),
  };
  writeFileSync(join(dir, 'package.json'), JSON.stringify(pkg, null, 2));
  const started = performance.now();
  await execa('npm', ['install', '--no-audit', '--no-fund', options.preferOnline ? '--prefer-online' : '--prefer-offline', '--loglevel=error'], {
    cwd: dir,
    env: appEnv({ ONNXRUNTIME_NODE_INSTALL: 'skip' }),
    extendEnv: false,
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
