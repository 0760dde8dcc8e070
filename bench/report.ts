/** What every benchmark's JSON says about the machine, and how it is written: temp file + rename, folder made. */
import { mkdirSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { dirname } from 'node:path';
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

/** Write a benchmark's report as indented JSON at `path`, atomically. */
export function writeReport(path: string, report: object): void {
  mkdirSync(dirname(path), { recursive: true });
  writeFileAtomic(path, `${JSON.stringify(report, null, 2)}\n`);
}
