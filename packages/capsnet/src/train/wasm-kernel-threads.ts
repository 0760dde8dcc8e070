// Runs the wasm SIMD training kernels (assembly/capsule-kernels.ts) on more than one thread.
//
// tfjs-backend-wasm's threaded build keeps its heap in a shared WebAssembly.Memory, so a worker_threads worker
// can instantiate the same kernel module on that very memory and work on the same tensors. A kernel call is cut
// into disjoint parts (examples of a batch, capsules, ranges of a weight): the calling thread runs part 0 and each
// helper one more part, and the call returns when all are done. XNNPACK's own threads are idle meanwhile, since
// tfjs runs one kernel at a time.
//
// The helpers wait on a shared control block (Atomics.wait) rather than on messages, because a kernel is a
// synchronous call inside a tfjs op: the calling thread blocks on Atomics.wait until they finish (a few ms).
// Workers are unref'd, so they never keep a process alive; a trap in a helper is reported back and rethrown here.
import { Worker } from 'node:worker_threads';

/** Control block (Int32 slots) shared with every helper. */
const GENERATION = 0; // bumped by the caller to start a call
const DONE = 1; // helpers that finished the current call
const FAILED = 2; // 1 when a helper's kernel threw
const STOP = 3; // 1 asks the helpers to exit
const CONTROL_SLOTS = 4;
/** Arguments of one helper's part: [kernel name index, argument count, ...arguments]. */
const MAX_ARGS = 16;

/** The helper's loop, evaluated as a CommonJS worker script (a string: no file to locate in src/ or dist/). */
const HELPER_SCRIPT = `
const { workerData } = require('node:worker_threads');
const { module, memory, control, args, index, names } = workerData;
const kernels = new WebAssembly.Instance(module, { env: { memory } }).exports;
const ctl = new Int32Array(control);
const slots = new Float64Array(args, index * ${MAX_ARGS + 2} * 8, ${MAX_ARGS + 2});
let seen = 0;
for (;;) {
  Atomics.wait(ctl, ${GENERATION}, seen);
  seen = Atomics.load(ctl, ${GENERATION});
  if (Atomics.load(ctl, ${STOP}) === 1) break;
  try {
    const count = slots[1];
    kernels[names[slots[0]]](...Array.from(slots.subarray(2, 2 + count)));
  } catch (e) {
    Atomics.store(ctl, ${FAILED}, 1);
  }
  Atomics.add(ctl, ${DONE}, 1);
  Atomics.notify(ctl, ${DONE});
}
`;

type Kernels = Record<string, (...args: number[]) => unknown>;

/** How long a call waits for its helpers before giving up on them (a kernel part takes milliseconds). */
const HELPER_TIMEOUT_MS = 120_000;

export class KernelThreads {
  private readonly control = new Int32Array(new SharedArrayBuffer(CONTROL_SLOTS * 4));
  private readonly args: Float64Array;
  private readonly workers: Worker[] = [];
  /** Set when a helper died or timed out: from then on every part runs on the calling thread. */
  private broken = false;

  /**
   * @param local the kernels instantiated on the calling thread (on the same memory)
   * @param module the shared-memory build of the kernels, for the helpers
   * @param memory tfjs-backend-wasm's shared memory
   * @param names the kernel exports a call may name
   * @param helpers worker threads besides the caller (parallel parts = helpers + 1)
   */
  constructor(private readonly local: Kernels, module: WebAssembly.Module, memory: WebAssembly.Memory,
    private readonly names: readonly string[], helpers: number) {
    this.args = new Float64Array(new SharedArrayBuffer(Math.max(1, helpers) * (MAX_ARGS + 2) * 8));
    for (let index = 0; index < helpers; index++) {
      const worker = new Worker(HELPER_SCRIPT, {
        eval: true,
        execArgv: [], // plain JavaScript: no need for the parent's loaders
        workerData: { module, memory, control: this.control.buffer, args: this.args.buffer, index, names },
      });
      worker.unref();
      worker.on('error', () => { this.broken = true; });
      worker.on('exit', () => { this.broken = true; });
      this.workers.push(worker);
    }
  }

  /** Parallel parts a call is cut into (the caller's included). */
  get parts(): number {
    return this.workers.length + 1;
  }

  /**
   * Runs kernel `name` once per part with argsOf(part) (disjoint outputs per part): parts 1.. on the helpers,
   * part 0 on the calling thread, and returns when all are done. Throws when a helper's part failed. `single`:
   * the work is too small to share, so argsOf(0) must cover all of it and runs here alone.
   */
  run(name: string, argsOf: (part: number) => number[], single = false): void {
    const kernel = this.local[name];
    const nameIndex = this.names.indexOf(name);
    if (kernel == null || nameIndex < 0) throw new Error(`train/wasm-kernel-threads.ts: unknown kernel ${name}`);
    if (single) {
      kernel(...argsOf(0));
      return;
    }
    if (this.broken || this.workers.length === 0) {
      for (let part = 0; part < this.parts; part++) kernel(...argsOf(part));
      return;
    }
    const helpers = this.workers.length;
    for (let h = 0; h < helpers; h++) {
      const a = argsOf(h + 1);
      if (a.length > MAX_ARGS) throw new Error(`train/wasm-kernel-threads.ts: ${name} has more than ${MAX_ARGS} arguments`);
      const base = h * (MAX_ARGS + 2);
      this.args[base] = nameIndex;
      this.args[base + 1] = a.length;
      this.args.set(a, base + 2);
    }
    Atomics.store(this.control, DONE, 0);
    Atomics.store(this.control, FAILED, 0);
    Atomics.add(this.control, GENERATION, 1);
    Atomics.notify(this.control, GENERATION);
    try {
      kernel(...argsOf(0));
    } finally {
      // Wait for the helpers even if this thread's part threw: they are still writing to the heap.
      const deadline = Date.now() + HELPER_TIMEOUT_MS;
      for (let done = Atomics.load(this.control, DONE); done < helpers; done = Atomics.load(this.control, DONE)) {
        if (Date.now() > deadline) {
          this.broken = true;
          throw new Error(`train/wasm-kernel-threads.ts: ${name}: a helper thread did not finish in ${HELPER_TIMEOUT_MS / 1000} s`);
        }
        Atomics.wait(this.control, DONE, done, 100);
      }
    }
    if (Atomics.load(this.control, FAILED) === 1) throw new Error(`train/wasm-kernel-threads.ts: ${name} failed on a helper thread`);
  }
}

/** [start, end) of part `part` of `parts` over `count` items (the first parts take one more when it does not divide). */
export function partRange(count: number, parts: number, part: number): [number, number] {
  const base = Math.floor(count / parts), extra = count % parts;
  const start = part * base + Math.min(part, extra);
  return [start, start + base + (part < extra ? 1 : 0)];
}
