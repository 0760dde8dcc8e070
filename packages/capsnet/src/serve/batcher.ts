/**
 * Dynamic batching for the server. Concurrent requests are packed into one inference run:
 *
 * - a run starts when `maxBatch` items are queued, or when the oldest queued request has waited `maxWaitMs`;
 * - only one run is in flight at a time: whatever arrives meanwhile queues, and goes in the next run;
 * - a request's items always stay together in one run (a request may carry at most `maxBatch` items);
 * - requests are served first in, first out;
 * - isolation: each request is checked on its own by `validate` before it joins the queue (a bad request is
 *   refused there and never reaches a run), and if a run of several requests still fails, each request is run
 *   again alone, so only the request that causes the failure gets it.
 *
 * Under light load a request waits at most `maxWaitMs` before its run; under heavy load the runs themselves
 * are the wait, so batches fill up to `maxBatch` and each run amortises the per-run overhead.
 */

export interface BatchPolicy {
  /** Most items in one run. */
  maxBatch: number;
  /** How long the oldest queued request may wait for company before its run starts anyway. 0: next tick. */
  maxWaitMs: number;
  /** Most items waiting at once; a request that would go past it is refused (QueueFullError). Default: unbounded. */
  maxQueue?: number;
}

/**
 * Checks one request's items before they join a batch; throws the error that request alone should get
 * (item k of the request is `inputs[k]`).
 */
export type Validate<I> = (inputs: I[]) => void;

export interface BatchStats {
  /** Requests submitted. */
  requests: number;
  /** Items (images or capsule sets) submitted. */
  items: number;
  /** Inference runs started. */
  runs: number;
  /** Most items in one run so far. */
  largestRun: number;
  /** Requests that failed because their run failed (after being rerun alone). */
  failedRequests: number;
  /** Requests refused by the validator before joining a batch (the server's stats: every 4xx on the queue's routes). */
  invalidRequests: number;
  /** Runs of several requests that failed and were split into one run per request. */
  splitRuns: number;
  /** Requests refused because the queue was full. */
  refusedRequests: number;
  /** Requests queued now, and whether a run is in flight. */
  queued: number;
  inFlight: boolean;
}

export interface BatchResult<O> {
  outputs: O[];
  /** Items in the run that served this request. */
  batchSize: number;
  /** Milliseconds between submit and the start of the run. */
  queuedMs: number;
  /** Milliseconds the run took. */
  runMs: number;
}

interface Pending<I, O> {
  inputs: I[];
  enqueuedAt: number;
  resolve: (result: BatchResult<O>) => void;
  reject: (error: unknown) => void;
}

/** Raised by submit() for a request larger than maxBatch: the caller should split it or say so. */
export class BatchTooLargeError extends RangeError {
  override name = 'BatchTooLargeError';
}

/** Raised by submit() when the queue is full: the server is overloaded, the client should retry later. */
export class QueueFullError extends Error {
  override name = 'QueueFullError';
}

export class Batcher<I, O> {
  readonly policy: BatchPolicy;
  private readonly queue: Pending<I, O>[] = [];
  private queuedItems = 0;
  private running = false;
  private timer: NodeJS.Timeout | undefined;
  private idleWaiters: (() => void)[] = [];
  private readonly counters = { requests: 0, items: 0, runs: 0, largestRun: 0, failedRequests: 0, invalidRequests: 0, splitRuns: 0, refusedRequests: 0 };

  constructor(
    private readonly run: (inputs: I[]) => Promise<O[]>,
    policy: BatchPolicy,
    private readonly validate: Validate<I> = () => {},
  ) {
    if (!Number.isInteger(policy.maxBatch) || policy.maxBatch < 1) throw new RangeError(`maxBatch must be a positive integer, got ${policy.maxBatch}`);
    if (!(policy.maxWaitMs >= 0)) throw new RangeError(`maxWaitMs must be >= 0, got ${policy.maxWaitMs}`);
    if (policy.maxQueue !== undefined && !(policy.maxQueue >= policy.maxBatch)) {
      throw new RangeError(`maxQueue must be at least maxBatch (${policy.maxBatch}), got ${policy.maxQueue}`);
    }
    this.policy = { ...policy };
  }

  /** Queue one request's items; resolves with its outputs, in order, once the run that holds them is done. */
  submit(inputs: I[]): Promise<BatchResult<O>> {
    if (inputs.length === 0) return Promise.resolve({ outputs: [], batchSize: 0, queuedMs: 0, runMs: 0 });
    if (inputs.length > this.policy.maxBatch) {
      return Promise.reject(new BatchTooLargeError(`${inputs.length} items in one request; the most is ${this.policy.maxBatch} (--max-batch)`));
    }
    try {
      this.validate(inputs);
    } catch (error) {
      this.counters.invalidRequests++;
      return Promise.reject(error);
    }
    if (this.queuedItems + inputs.length > (this.policy.maxQueue ?? Infinity)) {
      this.counters.refusedRequests++;
      return Promise.reject(new QueueFullError(`${this.queuedItems} items are already waiting (the most is ${this.policy.maxQueue}): retry shortly`));
    }
    return new Promise((resolve, reject) => {
      this.counters.requests++;
      this.counters.items += inputs.length;
      this.queue.push({ inputs, enqueuedAt: performance.now(), resolve, reject });
      this.queuedItems += inputs.length;
      this.schedule();
    });
  }

  stats(): BatchStats {
    return { ...this.counters, queued: this.queue.length, inFlight: this.running };
  }

  /** Resolves once nothing is queued and no run is in flight. */
  idle(): Promise<void> {
    if (!this.running && this.queue.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private schedule(): void {
    if (this.running || this.queue.length === 0) return;
    if (this.queuedItems >= this.policy.maxBatch) {
      this.startRun();
      return;
    }
    if (this.timer) return;
    const waited = performance.now() - this.queue[0]!.enqueuedAt;
    const remaining = Math.max(0, this.policy.maxWaitMs - waited);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.startRun();
    }, remaining);
  }

  private startRun(): void {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    if (this.running || this.queue.length === 0) return;
    const batch: Pending<I, O>[] = [];
    let size = 0;
    while (this.queue.length > 0 && size + this.queue[0]!.inputs.length <= this.policy.maxBatch) {
      const next = this.queue.shift()!;
      batch.push(next);
      size += next.inputs.length;
    }
    this.queuedItems -= size;
    this.running = true;
    this.counters.runs++;
    this.counters.largestRun = Math.max(this.counters.largestRun, size);
    this.execute(batch, size)
      .catch(() => {})
      .finally(() => {
        this.running = false;
        if (this.queue.length > 0) this.schedule();
        else for (const wake of this.idleWaiters.splice(0)) wake();
      });
  }

  /** One run over the batch's requests; on failure with several requests, each request again alone. */
  private async execute(batch: Pending<I, O>[], size: number): Promise<void> {
    const settle = (p: Pending<I, O>, outputs: O[], started: number) =>
      p.resolve({ outputs, batchSize: size, queuedMs: started - p.enqueuedAt, runMs: performance.now() - started });
    let started = performance.now();
    try {
      const outputs = await this.runChecked(batch.flatMap((p) => p.inputs));
      let offset = 0;
      for (const p of batch) {
        settle(p, outputs.slice(offset, offset + p.inputs.length), started);
        offset += p.inputs.length;
      }
      return;
    } catch (error) {
      if (batch.length === 1) {
        this.counters.failedRequests++;
        batch[0]!.reject(error);
        return;
      }
    }
    // Several requests shared the failed run: one of them may be its cause. Rerun each alone (in order), so the
    // others get their answers and only a request that fails by itself gets the error.
    this.counters.splitRuns++;
    for (const p of batch) {
      this.counters.runs++;
      started = performance.now();
      try {
        const outputs = await this.runChecked(p.inputs);
        p.resolve({ outputs, batchSize: p.inputs.length, queuedMs: started - p.enqueuedAt, runMs: performance.now() - started });
      } catch (error) {
        this.counters.failedRequests++;
        p.reject(error);
      }
    }
  }

  private async runChecked(inputs: I[]): Promise<O[]> {
    // Awaited inside an async function: a synchronous throw in run() becomes a rejection like any other failure.
    const outputs = await this.run(inputs);
    if (outputs.length !== inputs.length) throw new Error(`batch run returned ${outputs.length} outputs for ${inputs.length} inputs`);
    return outputs;
  }
}
