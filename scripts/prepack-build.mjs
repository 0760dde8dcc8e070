// A workspace's prepack build, skipped when its dist/ is already the build of the same inputs: `npm pack --workspaces`,
// `npm publish --dry-run` and the tests that run both would otherwise build each package again, with the same result.
//
//   node ../../scripts/prepack-build.mjs      prepack, in the workspace folder (then pack-manifest.mjs strip)
//
// The inputs: every file of the workspace but dist/ and node_modules/ (src/, its build scripts and tsconfig, its
// package.json, ...), the root's tsconfig.base.json and package-lock.json (the versions of TypeScript, esbuild and what
// the bundles embed), this script, and the dist/ of each workspace package it depends on (its build reads their types
// and bundles their JavaScript). After a build, their hash and a hash of what dist/ then holds are kept in
// node_modules/.cache/capsnet-prepack/<workspace>.json (outside the package, so never packed; `npm ci` clears it). The
// build is skipped only when both still match: a changed source, lock file or dependency rebuilds, and so does a dist/
// that something else wrote into since (`npm run build:web` from sources, a hand edit, a deleted file).
// Deleting that folder forces a build. `npm run build` itself always builds (and leaves no record).
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, lstatSync, mkdirSync, readFileSync, readdirSync, readlinkSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const CACHE = join(ROOT, 'node_modules', '.cache', 'capsnet-prepack');
/** Not inputs: the outputs, installed packages, and the manifest backup pack-manifest.mjs keeps while a pack runs. */
const SKIP = new Set(['dist', 'node_modules', '.package.json.pack-backup']);

/** sha256 over the files under each of `paths` (a file or a folder; relative path, mode's x bits and bytes of each). */
function hashFiles(paths, skip = new Set()) {
  const hash = createHash('sha256');
  const add = (path, label) => {
    const stat = lstatSync(path, { throwIfNoEntry: false });
    if (!stat) {
      hash.update(`${label}\0absent\0`);
    } else if (stat.isDirectory()) {
      for (const name of readdirSync(path).sort()) {
        if (!skip.has(name) && !name.endsWith('.tmp')) add(join(path, name), `${label}/${name}`);
      }
    } else if (stat.isSymbolicLink()) {
      hash.update(`${label}\0link\0${readlinkSync(path)}\0`);
    } else {
      hash.update(`${label}\0${stat.mode & 0o111}\0${stat.size}\0`).update(readFileSync(path));
    }
  };
  for (const path of paths) add(path, basename(path));
  return hash.digest('hex');
}

/** The folders of the workspace packages this one depends on, by package name. */
function workspaceDependencies(manifest) {
  const root = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8'));
  const byName = new Map();
  for (const ws of root.workspaces ?? []) {
    const dir = join(ROOT, ws);
    if (existsSync(join(dir, 'package.json'))) byName.set(JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')).name, dir);
  }
  const names = new Set(['dependencies', 'peerDependencies', 'devDependencies', 'optionalDependencies'].flatMap((f) => Object.keys(manifest[f] ?? {})));
  return [...names].filter((n) => byName.has(n) && n !== manifest.name).map((n) => byName.get(n));
}

/** The inputs' hashes, by what they are (the record keeps each, so a rebuild can say which changed). */
function inputHashes(dir, manifest) {
  return {
    'its files': hashFiles([dir], SKIP),
    'tsconfig.base.json, the lock file or this script': hashFiles([
      join(ROOT, 'tsconfig.base.json'),
      join(ROOT, 'package-lock.json'),
      fileURLToPath(import.meta.url),
    ]),
    "its workspace dependencies' dist/": hashFiles(workspaceDependencies(manifest).map((d) => join(d, 'dist'))),
  };
}

const dir = process.cwd();
const manifest = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'));
const record = join(CACHE, `${basename(dir)}.json`);
const inputs = inputHashes(dir, manifest);
let last;
try {
  last = JSON.parse(readFileSync(record, 'utf8'));
} catch {
  last = undefined;
}
const changed = last ? Object.keys(inputs).filter((k) => last.inputs?.[k] !== inputs[k]) : [];
if (last && changed.length === 0 && last.dist === hashFiles([join(dir, 'dist')])) {
  console.error(`prepack: ${manifest.name}: dist/ is the build of these sources (built ${last.builtAt}): not built again`);
} else {
  const why = !last ? 'no earlier build recorded' : changed.length ? `changed since the last build: ${changed.join(', ')}` : 'dist/ changed since its build';
  console.error(`prepack: ${manifest.name}: building (${why})`);
  rmSync(record, { force: true });
  execFileSync('npm', ['run', 'build'], { cwd: dir, stdio: 'inherit' });
  mkdirSync(CACHE, { recursive: true });
  const temp = `${record}.${process.pid}.tmp`;
  writeFileSync(temp, `${JSON.stringify({ inputs, dist: hashFiles([join(dir, 'dist')]), builtAt: new Date().toISOString() })}\n`);
  renameSync(temp, record);
}
