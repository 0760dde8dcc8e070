/**
 * Files that appear whole or not at all, temp files that never outlive their writer, and system errors turned
 * into one line that names the file and the fix.
 *
 * A temp file is named after its target and its writer's pid, `.<target>.tmp-<pid>-<n>`, beside the target (a
 * rename within one directory is atomic). A writer killed between write and rename leaves one behind;
 * `sweepTempFiles` removes those whose writer is gone, and every command that writes into a directory calls it
 * first.
 *
 * Atomic is not yet durable: after a power loss the rename can reach the disk before the data does, leaving the
 * target renamed but empty. So each temp file is fsynced before its rename, and the directory after it (POSIX:
 * the rename is recorded in the directory's own data).
 */
import { closeSync, existsSync, fsyncSync, openSync, readdirSync, renameSync, rmSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';

let tempCounter = 0;

/** `.<target>.tmp-<pid>-<n>` beside `path`. */
export function tempPathFor(path: string): string {
  return join(dirname(path), `.${basename(path)}.tmp-${process.pid}-${tempCounter++}`);
}

/** Ours `.<target>.tmp-<pid>-<n>` and the older `.tmp-<pid>-<time>-<target>`, each with the writer's pid. */
const TEMP_NAMES = [/^\.(?<target>.+)\.tmp-(?<pid>\d+)-\d+$/, /^\.tmp-(?<pid>\d+)-\d+-(?<target>.+)$/];

/** Is a process with this pid running on this machine? (EPERM: it exists but belongs to someone else.) */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Remove the temp files (and temp folders) in `dir` whose writer is no longer running (optionally only those of the given target
 * names). Returns the names removed. A missing directory has none.
 */
export function sweepTempFiles(dir: string, targets?: string[]): string[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  const removed: string[] = [];
  for (const name of names) {
    const match = TEMP_NAMES.map((re) => re.exec(name)).find(Boolean);
    if (!match?.groups) continue;
    const pid = Number(match.groups.pid);
    if (targets && !targets.includes(match.groups.target!)) continue;
    if (pid !== process.pid && processAlive(pid)) continue;
    // A temp folder (a Triton model repository being built) goes with its contents.
    rmSync(join(dir, name), { force: true, recursive: true });
    removed.push(name);
  }
  return removed;
}

/** A file operation that failed for a reason of the system (disk full, read-only, permissions...): one line. */
export class FileSystemError extends Error {
  override name = 'FileSystemError';
  constructor(
    message: string,
    readonly code: string,
    readonly path: string,
  ) {
    super(message);
  }
}

const FIXES: Record<string, (path: string) => string> = {
  ENOSPC: (p) => `the disk holding ${p} is full: free some space (or write elsewhere) and run the command again`,
  EDQUOT: (p) => `the disk quota for ${p} is used up: free some space (or write elsewhere) and run the command again`,
  EROFS: (p) => `${p} is on a read-only file system: write somewhere writable (e.g. --out DIR / -o FILE)`,
  EACCES: (p) => `permission denied for ${p}: choose a path you can write to, or fix its permissions`,
  EPERM: (p) => `operation not permitted on ${p}: choose a path you can write to, or fix its permissions`,
  EEXIST: (p) => `${p} already exists: remove it or choose another path`,
  EISDIR: (p) => `${p} is a directory, not a file: give a file path`,
  ENOTDIR: (p) => `a parent of ${p} is a file, not a directory: choose another path`,
  ENOENT: (p) => `${p} does not exist: check the path`,
  EMFILE: (p) => `too many open files while opening ${p}: raise the limit (ulimit -n) or pass fewer files`,
  ENAMETOOLONG: (p) => `the path ${p.slice(0, 80)}... is too long for the file system: use a shorter one`,
};

/**
 * One line for a system error (`e.code` among ENOSPC, EROFS, EACCES, EEXIST, EISDIR, ...), naming `path` (or the
 * error's own path) and the fix; undefined for anything else.
 */
export function systemErrorLine(e: unknown, path?: string): string | undefined {
  const error = e as NodeJS.ErrnoException;
  const fix = error && typeof error.code === 'string' ? FIXES[error.code] : undefined;
  const where = path ?? error?.path;
  if (!fix || !where) return undefined;
  return `${fix(where)} (${error.code})`;
}

/** Rethrow a system error as a FileSystemError about `path` (the target, not its temp file); others unchanged. */
export function asFileSystemError(e: unknown, path: string): Error {
  const line = systemErrorLine(e, path);
  return line ? new FileSystemError(line, (e as NodeJS.ErrnoException).code!, path) : (e as Error);
}

/** Write `bytes` to a new file and flush it to the disk (fsync) before returning. */
export function writeFileDurable(path: string, bytes: string | Uint8Array): void {
  const fd = openSync(path, 'w');
  try {
    const data = typeof bytes === 'string' ? Buffer.from(bytes) : bytes;
    for (let written = 0; written < data.length; ) written += writeSync(fd, data, written, data.length - written);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** fsync a directory, so the renames into it survive a power loss. Some file systems refuse: then nothing more is possible. */
export function syncDirectory(dir: string): void {
  let fd: number | undefined;
  try {
    fd = openSync(dir, 'r');
    fsyncSync(fd);
  } catch (e) {
    if (!['EINVAL', 'EISDIR', 'EPERM', 'EACCES', 'ENOTSUP'].includes((e as NodeJS.ErrnoException).code ?? '')) throw e;
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/**
 * Write several files so that each appears whole or not at all, and stays so after a power loss: all go to temp
 * files first (each fsynced), then each is renamed into place, in the order given, and the directories are
 * fsynced. On failure no temp file is left and the error names the target file.
 */
export function writeFilesAtomic(files: { path: string; bytes: string | Uint8Array }[]): void {
  const temps = files.map((f) => tempPathFor(f.path));
  let current = files[0]?.path ?? '';
  try {
    files.forEach((f, k) => {
      current = f.path;
      writeFileDurable(temps[k]!, f.bytes);
    });
    files.forEach((f, k) => {
      current = f.path;
      renameSync(temps[k]!, f.path);
    });
    for (const dir of new Set(files.map((f) => dirname(f.path)))) syncDirectory(dir);
  } catch (e) {
    for (const t of temps) rmSync(t, { force: true });
    throw asFileSystemError(e, current);
  }
}

/** Write a file so readers see the old content or the new, never half: temp file in the same directory, then rename. */
export function writeFileAtomic(path: string, data: string | Uint8Array): void {
  writeFilesAtomic([{ path, bytes: data }]);
}

/**
 * An output that is already there and that the caller did not ask to replace (nothing a user made is overwritten
 * without being asked). `message` is for a library caller (the `overwrite` option); `commandLineMessage` says the
 * same in the `capsnet` command's terms (--overwrite), and the CLI prints that one.
 */
export class OutputExistsError extends Error {
  override name = 'OutputExistsError';
  constructor(
    readonly path: string,
    message: string,
    readonly commandLineMessage: string,
  ) {
    super(message);
  }
}

/**
 * Throw OutputExistsError for the first of `paths` that exists, unless `overwrite`. `elsewhere` names the other
 * way out, as an option of the library call and as a flag of the command (e.g. `out` / `-o`).
 */
export function refuseToReplace(paths: string[], overwrite: boolean | undefined, elsewhere: { option: string; flag: string }): void {
  if (overwrite) return;
  const path = paths.find((p) => existsSync(p));
  if (path === undefined) return;
  throw new OutputExistsError(
    path,
    `${path} already exists: pass overwrite: true to replace it, or choose another ${elsewhere.option}`,
    `${path} already exists: pass --overwrite to replace it, or choose another ${elsewhere.flag}`,
  );
}
