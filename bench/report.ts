/** What every benchmark's JSON says about the machine, and how it is written: temp file + rename, folder made. */
import { existsSync, mkdirSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { dirname, resolve } from 'node:path';
import { writeFileAtomic } from '../packages/capsnet/src/files/atomic.ts';

/** Cores, CPU model, platform, Node and the 1-minute load average now (timings on a loaded machine read high). */
export function machineInfo() {
  return {
    cpus: cpus().length,
    cpuModel: cpus()[0]?.model ?? 'unknown',
    platform: `${process.platform}/${process.arch}`,
    node: process.version,
    loadAverage: Math.round(loadavg()[0]! * 100) / 100,
  };
}

/**
 * A path from a bench's command line, made absolute the way the user's shell would: `npm run` starts the script in
 * the repository's root, so a relative path is taken from the folder the command was typed in (npm's INIT_CWD).
 */
export function userPath(path: string): string {
  return resolve(process.env.INIT_CWD ?? process.cwd(), path);
}

/** A file or folder named on the command line that must exist: its absolute path, or one line naming the fix, exit 2. */
export function existingPath(path: string, flag: string): string {
  const absolute = userPath(path);
  if (!existsSync(absolute)) {
    console.error(`${flag} ${path}: not found (${absolute}); relative paths are taken from the folder you ran npm in`);
    process.exit(2);
  }
  return absolute;
}

/** Write a benchmark's report as indented JSON at `path`, atomically. */
export function writeReport(path: string, report: object): void {
  mkdirSync(dirname(path), { recursive: true });
  writeFileAtomic(path, `${JSON.stringify(report, null, 2)}\n`);
}
