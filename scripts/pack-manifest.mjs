// The package.json that `npm pack` and `npm publish` put in a workspace's tarball: without the repository's
// `capsnet-source` export condition, which points at src/ (not in the tarball), so an app that happens to enable a
// condition of that name is not sent to missing files. npm has no publish-time override of `exports` (its
// publishConfig holds npm config, not manifest fields), so the workspace's prepack runs `strip` after its build and
// its postpack runs `restore`.
//
// The working tree's package.json must come back even when the pack fails after prepack (a bad --pack-destination, a
// full disk, Ctrl-C): npm then skips postpack. So `strip` keeps the original in BACKUP together with the pid of the npm
// process that packs, and starts a detached watcher that puts it back once that process has exited; a later `strip`
// or `restore` also puts back any leftover first.
//
//   node ../../scripts/pack-manifest.mjs strip      prepack, in the workspace folder
//   node ../../scripts/pack-manifest.mjs restore    postpack
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const CONDITION = 'capsnet-source';
const MANIFEST = 'package.json';
/** Beside package.json, outside every workspace's `files`, so never packed; ignored by git. */
const BACKUP = '.package.json.pack-backup';

/** Write a file whole or not at all (temp file, then rename). */
function writeAtomic(path, text) {
  const temp = `.${path}.tmp-${process.pid}`;
  writeFileSync(temp, text);
  renameSync(temp, path);
}

/** `exports` with every `capsnet-source` entry removed, at any depth. */
export function withoutCondition(value) {
  if (Array.isArray(value)) return value.map(withoutCondition);
  if (value === null || typeof value !== 'object') return value;
  return Object.fromEntries(
    Object.entries(value)
      .filter(([key]) => key !== CONDITION)
      .map(([key, v]) => [key, withoutCondition(v)]),
  );
}

/** Put the original package.json back if a backup is there (and, with `owner`, only if that pack made it). */
function restore(owner) {
  let backup;
  try {
    backup = JSON.parse(readFileSync(BACKUP, 'utf8'));
  } catch (e) {
    if (e.code === 'ENOENT') return;
    throw e;
  }
  if (owner !== undefined && backup.owner !== owner) return;
  writeAtomic(MANIFEST, backup.manifest);
  rmSync(BACKUP, { force: true });
}

const alive = (pid) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return e.code === 'EPERM';
  }
};

/** The npm process this script runs under (npm sets its title to `npm <command>`), or undefined where ps is missing. */
function npmProcess() {
  let pid = process.ppid;
  for (let depth = 0; depth < 8 && pid > 1; depth++) {
    let line;
    try {
      line = execFileSync('ps', ['-o', 'ppid=,args=', '-p', String(pid)], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    } catch {
      return undefined;
    }
    const [, parent, args] = /^(\d+)\s+(.*)$/.exec(line) ?? [];
    if (/^npm(\s|$)|npm-cli\.js/.test(args ?? '')) return pid;
    pid = Number(parent);
  }
  return undefined;
}

function strip() {
  restore();
  const original = readFileSync(MANIFEST, 'utf8');
  const manifest = JSON.parse(original);
  if (!JSON.stringify(manifest.exports ?? null).includes(`"${CONDITION}"`)) return;
  const owner = npmProcess() ?? null;
  writeAtomic(BACKUP, JSON.stringify({ owner, manifest: original }));
  writeAtomic(MANIFEST, `${JSON.stringify({ ...manifest, exports: withoutCondition(manifest.exports) }, null, 2)}\n`);
  if (owner !== null) {
    spawn(process.execPath, [fileURLToPath(import.meta.url), 'watch', String(owner)], { cwd: process.cwd(), detached: true, stdio: 'ignore' }).unref();
  } else {
    console.error(`pack-manifest: no npm process found to watch: if this pack fails, run \`node ${fileURLToPath(import.meta.url)} restore\` here`);
  }
}

/** Until the backup is gone (postpack restored it), or npm has exited and this watcher restores it. */
async function watch(owner) {
  while (existsSync(BACKUP)) {
    if (!alive(owner)) {
      restore(owner);
      return;
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const [command, pid] = process.argv.slice(2);
  if (command === 'strip') strip();
  else if (command === 'restore') restore();
  else if (command === 'watch') await watch(Number(pid));
  else {
    console.error("usage: node scripts/pack-manifest.mjs strip|restore (run by a workspace's prepack / postpack)");
    process.exitCode = 2;
  }
}
