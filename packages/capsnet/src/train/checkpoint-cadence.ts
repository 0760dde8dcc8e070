/**
 * When `capsnet train` writes a mid-epoch checkpoint: at a step that is a multiple of `--checkpoint-every`, and
 * only once `--checkpoint-interval` has passed since the last checkpoint (mid-epoch or epoch end) was written.
 * A paper-size checkpoint is ~98 MB: the step count alone rewrote it 37 times an epoch at batch 32 on 60,000
 * images, however fast the steps were; the time floor bounds the writes by wall time (at most one per interval),
 * and the step multiple keeps where they land reproducible. Epoch ends are always written (train/trainer.ts).
 */

/** Default `--checkpoint-interval`: 5 minutes. */
export const DEFAULT_CHECKPOINT_INTERVAL_S = 300;

export class CheckpointCadence {
  readonly #every: number;
  readonly #intervalMs: number;
  readonly #clock: () => number;
  #last: number;

  /**
   * @param every   steps between candidate checkpoints (0: none mid-epoch)
   * @param intervalS  least seconds between two checkpoints (0: every candidate is written)
   * @param clock   milliseconds, monotonic (default performance.now); tests pass their own
   */
  constructor(every: number, intervalS: number, clock: () => number = () => performance.now()) {
    if (!Number.isInteger(every) || every < 0) throw new Error(`checkpoint every must be a whole number of steps >= 0, got ${every}`);
    if (!Number.isFinite(intervalS) || intervalS < 0) throw new Error(`checkpoint interval must be a number of seconds >= 0, got ${intervalS}`);
    this.#every = every;
    this.#intervalMs = intervalS * 1000;
    this.#clock = clock;
    this.#last = clock();
  }

  /** After `stepsDone` of an epoch's `stepsPerEpoch` steps: is a mid-epoch checkpoint due now? */
  due(stepsDone: number, stepsPerEpoch: number): boolean {
    if (this.#every === 0 || stepsDone % this.#every !== 0 || stepsDone >= stepsPerEpoch) return false;
    return this.#clock() - this.#last >= this.#intervalMs;
  }

  /** A checkpoint (mid-epoch or epoch end) has just been written: the interval starts again. */
  wrote(): void {
    this.#last = this.#clock();
  }
}

/**
 * Checkpoint writes in one epoch of `stepsPerEpoch` steps taking `stepSeconds` each (writes themselves taking no
 * time), epoch end included, as CheckpointCadence decides them: for the README's and the report's arithmetic.
 */
export function checkpointWritesPerEpoch(stepsPerEpoch: number, every: number, intervalS: number, stepSeconds: number): number {
  let now = 0;
  const cadence = new CheckpointCadence(every, intervalS, () => now);
  let writes = 0;
  for (let s = 1; s <= stepsPerEpoch; s++) {
    now += stepSeconds * 1000;
    if (cadence.due(s, stepsPerEpoch)) {
      writes++;
      cadence.wrote();
    }
  }
  return writes + 1;
}
