/**
 * The run directory's rules, kept out of the training loop:
 *
 * - a run directory holding a run (a checkpoint, or metrics) is reused only with `--resume` or `--overwrite`;
 * - `--overwrite` replaces the run: it removes what the project wrote there (RUN_OUTPUTS: the run, its default
 *   exports, its figure) and names, without removing them, the files it did not write;
 * - `--resume` continues the run as it was started: a flag given again with another value is refused with the
 *   list of differences, except the flags in RESUME_SAFE_FLAGS;
 * - one trainer per run directory, by a lock file that names its pid; a lock whose process is gone (a crash, a
 *   SIGKILL) is stale and taken over at once;
 * - temp files left by a killed writer are swept when the directory is opened;
 * - nothing is created until the inputs have been checked (`checkRunDir` only reads, `openRunDir` creates).
 */
import { existsSync, linkSync, lstatSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { decoderPathFor } from '@capsnet-onnx/core';
import { PRECISIONS, defaultModelFile } from '../export/names.ts';
import { asFileSystemError, processAlive, sweepTempFiles, tempPathFor } from '../files/atomic.ts';
import { shortList } from '../files/short-list.ts';

export const LOCK_FILE = 'train.lock';
/** Files that make a directory a run: reusing it needs --resume or --overwrite. */
export const RUN_FILES = ['checkpoint.bin', 'metrics.jsonl'];
/** `capsnet plot RUN_DIR`'s figure without -o. */
export const CURVES_FILE = 'curves.svg';

/**
 * Every file the project writes into a run directory under its own name: the run, `capsnet export`'s models and
 * decoders at each precision (without -o) and `capsnet plot`'s figure. `--overwrite` removes these, so that the
 * new run is not exported, served, parity-checked or plotted alongside the old run's files; anything else in the
 * directory is the user's and stays.
 */
export const RUN_OUTPUTS: readonly string[] = [
  ...RUN_FILES,
  ...PRECISIONS.flatMap((p) => [defaultModelFile(p), decoderPathFor(defaultModelFile(p))]),
  CURVES_FILE,
];

/** The flags that fix what a run computes; --resume refuses a change to any of them. */
export interface RunFlags {
  preset?: string;
  data?: string;
  batchSize?: number;
  routing?: number;
  seed?: number;
  trainLimit?: number;
  testLimit?: number;
  model?: string;
  primaryCaps?: number;
  noneOfTheAbove?: boolean;
  reconstructionWeight?: number;
  learningRate?: number;
  decayRate?: number;
  decaySteps?: number;
}

const FLAG_NAMES: Record<keyof RunFlags, string> = {
  preset: '--preset',
  data: '--data',
  batchSize: '--batch-size',
  routing: '--routing',
  seed: '--seed',
  trainLimit: '--train-limit',
  testLimit: '--test-limit',
  model: '--model',
  primaryCaps: '--primary-caps',
  noneOfTheAbove: '--[no-]none-of-the-above',
  reconstructionWeight: '--reconstruction-weight',
  learningRate: '--learning-rate',
  decayRate: '--decay-rate',
  decaySteps: '--decay-steps',
};

/**
 * Flags a resumed run may change: `--epochs` (train further, or stop sooner), `--checkpoint-every`, `--checkpoint-interval`,
 * `--no-progress`, and `--backend` (same computation on another backend; its floats may differ in the last bits).
 */
export const RESUME_SAFE_FLAGS = ['--epochs', '--checkpoint-every', '--checkpoint-interval', '--no-progress', '--backend'] as const;

export class RunDirError extends Error {
  override name = 'RunDirError';
}

/**
 * The flags given now that differ from the run's, as `--seed 4 (the run has 9)` lines. Only keys present in
 * `given` are compared, so a CLI passes the flags the user typed and a caller of train() passes every one.
 */
export function flagDifferences(run: RunFlags, given: RunFlags): string[] {
  const out: string[] = [];
  for (const key of Object.keys(FLAG_NAMES) as (keyof RunFlags)[]) {
    if (!(key in given) || given[key] === undefined) continue;
    if (run[key] === undefined && key !== 'trainLimit' && key !== 'testLimit') continue; // older checkpoints
    if (given[key] !== run[key]) out.push(`${FLAG_NAMES[key]} ${String(given[key])} (the run has ${run[key] === undefined ? 'none' : String(run[key])})`);
  }
  return out;
}

/** Refuse a resume whose flags differ from the run's, listing each difference and the way out. */
export function checkResumeFlags(runDir: string, run: RunFlags, given: RunFlags): void {
  const diff = flagDifferences(run, given);
  if (diff.length) {
    throw new RunDirError(
      `--resume would change the run in ${runDir}: ${diff.join(', ')}. Drop these flags to continue the run as it was ` +
        `(only ${RESUME_SAFE_FLAGS.join(', ')} may change on resume), or start a new run with another --out (or --overwrite)`,
    );
  }
}

interface LockOwner {
  pid: number;
  host: string;
  startedAt: string;
}

function readLock(path: string): LockOwner | undefined {
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as LockOwner;
  } catch {
    return undefined;
  }
}

/** The live trainer holding the directory's lock, if any (a lock from this host whose process is gone is stale). */
export function lockOwner(runDir: string): LockOwner | undefined {
  const owner = readLock(join(runDir, LOCK_FILE));
  if (!owner) return undefined;
  if (owner.host === hostname() && !processAlive(owner.pid)) return undefined;
  return owner;
}

function busy(runDir: string, owner: LockOwner): RunDirError {
  return new RunDirError(
    `${runDir} is in use by another trainer (pid ${owner.pid} on ${owner.host}, since ${owner.startedAt}): wait for it to finish, ` +
      `stop it, or choose another --out (a lock left by a crashed trainer on this machine is taken over automatically)`,
  );
}

/** What is in the directory now, checked before anything is created. */
export function checkRunDir(runDir: string, mode: { resume: boolean; overwrite: boolean }): void {
  if (mode.resume && mode.overwrite) throw new RunDirError('--resume and --overwrite contradict each other: pick one');
  if (existsSync(runDir) && !statSync(runDir).isDirectory()) {
    throw new RunDirError(`--out ${runDir} is a file, not a directory: choose a directory path`);
  }
  const owner = existsSync(runDir) ? lockOwner(runDir) : undefined;
  if (owner) throw busy(runDir, owner);
  const hasRun = RUN_FILES.some((f) => {
    const path = join(runDir, f);
    return existsSync(path) && statSync(path).size > 0;
  });
  if (mode.resume) {
    if (!existsSync(join(runDir, 'checkpoint.bin'))) throw new RunDirError(`--resume: no checkpoint in ${runDir}; start a new run without --resume`);
  } else if (hasRun && !mode.overwrite) {
    throw new RunDirError(
      `${runDir} already holds a run (${RUN_FILES.filter((f) => existsSync(join(runDir, f))).join(', ')}): continue it with --resume, ` +
        'replace it with --overwrite, or choose another --out',
    );
  }
}

export interface RunDirHandle extends Disposable {
  path: string;
  /** Temp files of killed writers that were removed on opening. */
  swept: string[];
  /** With overwrite: the previous run's files (RUN_OUTPUTS) that were removed, and what else the directory holds. */
  removed: string[];
  kept: string[];
  /** Release the lock (also done at process exit). */
  release(): void;
}

/**
 * Create the directory if needed, take its lock (taking over a stale one), sweep orphaned temp files and, with
 * `overwrite`, remove the previous run's files. Call after the inputs have been validated; hold the handle with
 * `using` so the lock is released however the run ends.
 */
export function openRunDir(runDir: string, mode: { overwrite: boolean }): RunDirHandle {
  try {
    mkdirSync(runDir, { recursive: true });
  } catch (e) {
    throw asFileSystemError(e, runDir);
  }
  const lockPath = join(runDir, LOCK_FILE);
  const me: LockOwner = { pid: process.pid, host: hostname(), startedAt: new Date().toISOString() };
  // Write the lock whole under a temp name, then link it into place: link fails if a lock exists, so exactly one
  // trainer wins, and no reader ever sees a half-written lock.
  const temp = tempPathFor(lockPath);
  for (let attempt = 0; ; attempt++) {
    try {
      writeFileSync(temp, JSON.stringify(me));
      linkSync(temp, lockPath);
      rmSync(temp, { force: true });
      break;
    } catch (e) {
      rmSync(temp, { force: true });
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw asFileSystemError(e, lockPath);
      const owner = lockOwner(runDir);
      if (owner || attempt > 0) throw busy(runDir, owner ?? readLock(lockPath) ?? { pid: 0, host: '?', startedAt: '?' });
      rmSync(lockPath, { force: true }); // stale: its trainer is gone
    }
  }
  let held = true;
  const release = () => {
    if (!held) return;
    held = false;
    if (readLock(lockPath)?.pid === process.pid) rmSync(lockPath, { force: true });
    process.off('exit', release);
  };
  process.on('exit', release);
  const swept = sweepTempFiles(runDir);
  const removed: string[] = [];
  let kept: string[] = [];
  if (mode.overwrite) {
    for (const f of RUN_OUTPUTS) {
      const path = join(runDir, f);
      // Files only: a folder under one of these names is not ours to empty.
      if (!existsSync(path) || lstatSync(path).isDirectory()) continue;
      try {
        rmSync(path, { force: true });
      } catch (e) {
        throw asFileSystemError(e, path);
      }
      removed.push(f);
    }
    kept = readdirSync(runDir)
      .filter((f) => f !== LOCK_FILE)
      .sort();
  }
  return { path: runDir, swept, removed, kept, release, [Symbol.dispose]: release };
}

/**
 * The one line `--overwrite` prints: what of the previous run it removed and, as a warning, what it left because
 * the project did not write it (a stale file there, e.g. `-o other.onnx`, would otherwise go unnoticed).
 */
export function overwriteReport(handle: Pick<RunDirHandle, 'removed' | 'kept'>): string | undefined {
  const parts = [
    ...(handle.removed.length ? [`removed the previous run's ${handle.removed.join(', ')}`] : []),
    ...(handle.kept.length ? [`kept ${shortList(handle.kept, 8)}, which capsnet did not name (check that none is the old run's)`] : []),
  ];
  return parts.length ? `--overwrite: ${parts.join('; ')}` : undefined;
}
