/**
 * Child process for test/e2e/faults.test.ts: trains or exports a tiny CapsNet and, when CAPSNET_FAULT says so, kills
 * itself with SIGKILL at the Nth atomic write: `rename:N` between a temp file's write and its rename, `write:N`
 * halfway through writing a temp file (through its descriptor, as files/atomic.ts writes), `step:N` at the Nth
 * change to the file system under FAULT_DIR (mkdir, open for writing, write (half of it), rename, copy or remove:
 * every step of an export, in order). (The test also kills children from outside at random times.)
 *
 *   node --import tsx test/support/fault-child.ts train RUN_DIR EPOCHS
 *   node --import tsx test/support/fault-child.ts export RUN_DIR MODEL_PATH
 *   node --import tsx test/support/fault-child.ts triton RUN_DIR REPOSITORY_DIR     (--triton, with overwrite)
 */
import fs, { existsSync } from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
import { join } from 'node:path';
import { readEnv } from './env.ts';

/** A CapsNet small enough to train a step in milliseconds on 28x28 digits, with the paper's layer structure. */
export const FAULT_CONFIG = { conv1Filters: 4, primaryMaps: 2, primaryDim: 4, digitDim: 6, decoderHidden: [8, 16] };
export const FAULT_RUN = { trainLimit: 48, testLimit: 16, batchSize: 16, seed: 7 };
export const EXPORTED_AT = new Date('2024-01-01T00:00:00.000Z');

const die = (): never => {
  process.kill(process.pid, 'SIGKILL');
  for (;;); // SIGKILL arrives before this matters
};

/** The Nth fault point (counted with the others) a write through one of `fds` is: write half its bytes, then die. */
function dieHalfwayThroughNthWrite(fds: Set<number>): void {
  const write = fs.writeSync;
  fs.writeSync = ((fd: number, data: NodeJS.ArrayBufferView, offset: number = 0, length?: number, ...rest: unknown[]) => {
    if (fds.has(fd) && ++count === target) {
      const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
      write(fd, bytes, offset, (length ?? bytes.length - offset) >> 1);
      die();
    }
    return (write as (...a: unknown[]) => number)(fd, data, offset, length, ...rest);
  }) as typeof fs.writeSync;
}

const [kind, at] = (readEnv('CAPSNET_FAULT') ?? ':').split(':');
const target = Number(at);
let count = 0;
if (kind === 'rename') {
  const rename = fs.renameSync;
  fs.renameSync = (from: fs.PathLike, to: fs.PathLike) => {
    if (String(from).includes('.tmp-') && ++count === target) die();
    return rename(from, to);
  };
} else if (kind === 'write') {
  // Temp files are written through a descriptor (openSync, writeSync, fsyncSync: files/atomic.ts).
  const open = fs.openSync;
  const tempFds = new Set<number>();
  fs.openSync = ((path: fs.PathLike, ...rest: unknown[]) => {
    const fd = (open as (...a: unknown[]) => number)(path, ...rest);
    if (String(path).includes('.tmp-')) tempFds.add(fd);
    return fd;
  }) as typeof fs.openSync;
  dieHalfwayThroughNthWrite(tempFds);
} else if (kind === 'step') {
  // Only changes under FAULT_DIR count (tsx's own cache writes elsewhere would make the count vary).
  const under = (path: fs.PathLike | fs.PathOrFileDescriptor) => String(path).startsWith(process.env.FAULT_DIR ?? '/nonexistent');
  const step = (path: fs.PathLike | fs.PathOrFileDescriptor) => under(path) && ++count === target;
  const { mkdirSync, renameSync, rmSync, copyFileSync, writeFileSync, openSync } = fs;
  const ours = new Set<number>();
  fs.mkdirSync = ((path: fs.PathLike, options?: fs.MakeDirectoryOptions) => (step(path) ? die() : mkdirSync(path, options))) as typeof fs.mkdirSync;
  fs.renameSync = (from: fs.PathLike, to: fs.PathLike) => (step(from) ? die() : renameSync(from, to));
  fs.rmSync = (path: fs.PathLike, options?: fs.RmOptions) => (step(path) ? die() : rmSync(path, options));
  fs.copyFileSync = (from: fs.PathLike, to: fs.PathLike, mode?: number) => (step(to) ? die() : copyFileSync(from, to, mode));
  fs.openSync = ((path: fs.PathLike, flags?: fs.OpenMode, ...rest: unknown[]) => {
    const writing = flags !== undefined && flags !== 'r';
    if (writing && step(path)) die();
    const fd = (openSync as (...a: unknown[]) => number)(path, flags, ...rest);
    if (writing && under(path)) ours.add(fd);
    return fd;
  }) as typeof fs.openSync;
  dieHalfwayThroughNthWrite(ours);
  fs.writeFileSync = ((path: fs.PathOrFileDescriptor, data: string | NodeJS.ArrayBufferView, options?: fs.WriteFileOptions) => {
    if (step(path)) {
      const bytes = typeof data === 'string' ? Buffer.from(data) : new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
      writeFileSync(path, bytes.subarray(0, bytes.length >> 1));
      die();
    }
    return writeFileSync(path, data, options);
  }) as typeof fs.writeFileSync;
}
syncBuiltinESMExports();

if (import.meta.url === `file://${process.argv[1]}`) {
  const [command, runDir, arg] = process.argv.slice(2) as [string, string, string];
  if (command === 'train') {
    const { train } = await import('../../packages/capsnet/src/train/trainer.ts');
    await train({
      preset: 'small',
      data: 'mnist-sample',
      epochs: Number(arg),
      backend: (process.env.FAULT_BACKEND ?? 'cpu') as 'cpu',
      out: runDir,
      resume: existsSync(join(runDir, 'checkpoint.bin')),
      checkpointEvery: 1,
      checkpointIntervalS: 0,
      configOverrides: FAULT_CONFIG,
      ...FAULT_RUN,
      log: () => {},
      progressBar: false,
    });
  } else if (command === 'triton') {
    const { exportCheckpoint } = await import('../../packages/capsnet/src/export/exporter.ts');
    exportCheckpoint(runDir, { triton: { dir: arg }, exportedAt: EXPORTED_AT, overwrite: true });
  } else {
    const { exportCheckpoint } = await import('../../packages/capsnet/src/export/exporter.ts');
    // The fault test puts an older pair there on purpose and re-exports over it.
    exportCheckpoint(runDir, { out: arg, exportedAt: EXPORTED_AT, overwrite: true });
  }
  process.exit(0);
}
