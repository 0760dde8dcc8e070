// The wasm SIMD training kernels (assembly/training-kernels.ts, compiled by `npm run build:kernels` to
// src/train/backends/kernels/*.wasm) on the tfjs wasm backend's heap, and on more than one thread.
//
// The module imports the backend's own WebAssembly.Memory, so a tensor's heap offset is its pointer and the kernels
// work on tensors in place. The threaded build keeps that memory shared, so a worker_threads worker can instantiate
// the same module on the very same memory: a kernel call is cut into disjoint chunks (examples of a batch,
// capsules, rows, channels, ranges of a weight), and the calling thread and the helpers each claim chunks until
// none are left; the call returns when every chunk is done. XNNPACK's own threads are idle meanwhile, since tfjs
// runs one kernel at a time.
//
// There are several chunks per thread, claimed one at a time, so that a thread which gets less of a core (another
// process on it, issue 25) simply does fewer chunks instead of holding up the call: with one fixed part per
// thread, every call would wait for the slowest thread.
//
// The helpers wait on a shared control block (Atomics.wait) rather than on messages, because a kernel is a
// synchronous call inside a tfjs op: the calling thread blocks on Atomics.wait until the chunks are done
// (milliseconds). A chunk is claimed by compare-and-swap on one word holding (call number, next chunk), so a helper
// that wakes late can never take a chunk of a later call for one of an earlier call. Workers are unref'd, so they
// never keep a process alive; a trap in a helper is reported back and rethrown here, and a dead or stuck helper
// makes every later call run all its chunks on the calling thread.
import { readFileSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
import type { TensorInfo } from '@tensorflow/tfjs-core';
import { getThreadsCount } from '@tensorflow/tfjs-backend-wasm';

/** Control block (Int32 slots) shared with every helper. */
const CLAIM = 0; // (call number << 16) | next unclaimed chunk
const CHUNKS = 1; // (call number << 16) | chunks in that call
const COMPLETED = 2; // chunks of the current call that are done
const FAILED = 3; // 1 when a kernel threw on a helper in the current call
const CONTROL_SLOTS = 4;
/** Per chunk: [kernel name index, argument count, ...arguments]. */
const MAX_ARGS = 24;
const SLOT = MAX_ARGS + 2;
/** Chunks per thread in a call (see above). */
const CHUNKS_PER_THREAD = 4;

/** The helper's loop, evaluated as a CommonJS worker script (a string: no file to locate in src/ or dist/). */
const HELPER_SCRIPT = `
const { workerData } = require('node:worker_threads');
const { module, memory, control, args, names } = workerData;
const kernels = new WebAssembly.Instance(module, { env: { memory } }).exports;
const ctl = new Int32Array(control);
const slots = new Float64Array(args);
for (;;) {
  const claim = Atomics.load(ctl, ${CLAIM});
  const chunks = Atomics.load(ctl, ${CHUNKS});
  // Only a chunk of the call that CHUNKS describes, and only one that is left; otherwise sleep until CLAIM moves.
  if (claim >>> 16 !== chunks >>> 16 || (claim & 0xffff) >= (chunks & 0xffff)) {
    Atomics.wait(ctl, ${CLAIM}, claim);
    continue;
  }
  if (Atomics.compareExchange(ctl, ${CLAIM}, claim, claim + 1) !== claim) continue;
  const base = (claim & 0xffff) * ${SLOT};
  try {
    kernels[names[slots[base]]](...Array.from(slots.subarray(base + 2, base + 2 + slots[base + 1])));
  } catch (e) {
    Atomics.store(ctl, ${FAILED}, 1);
  }
  Atomics.add(ctl, ${COMPLETED}, 1);
  Atomics.notify(ctl, ${COMPLETED});
}
`;

type Kernels = Record<string, (...args: number[]) => unknown>;

/** How long a call waits for its helpers before giving up on them (a kernel chunk takes milliseconds). */
const HELPER_TIMEOUT_MS = 120_000;

export class KernelThreads {
  private readonly control = new Int32Array(new SharedArrayBuffer(CONTROL_SLOTS * 4));
  private readonly args: Float64Array;
  private readonly workers: Worker[] = [];
  /** Set when a helper died or timed out: from then on every chunk runs on the calling thread. */
  private broken = false;
  private call = 0;

  /**
   * @param local the kernels instantiated on the calling thread (on the same memory)
   * @param module the shared-memory build of the kernels, for the helpers
   * @param memory tfjs-backend-wasm's shared memory
   * @param names the kernel exports a call may name
   * @param helpers worker threads besides the caller
   */
  constructor(
    private readonly local: Kernels,
    module: WebAssembly.Module,
    memory: WebAssembly.Memory,
    private readonly names: readonly string[],
    helpers: number,
  ) {
    this.args = new Float64Array(new SharedArrayBuffer((helpers + 1) * CHUNKS_PER_THREAD * SLOT * 8));
    for (let index = 0; index < helpers; index++) {
      const worker = new Worker(HELPER_SCRIPT, {
        eval: true,
        execArgv: [], // plain JavaScript: no need for the parent's loaders
        workerData: { module, memory, control: this.control.buffer, args: this.args.buffer, names },
      });
      worker.unref();
      worker.on('error', () => {
        this.broken = true;
      });
      worker.on('exit', () => {
        this.broken = true;
      });
      this.workers.push(worker);
    }
  }

  /** Disjoint parts a call is cut into (argsOf's `parts`; with helpers, several per thread). */
  get parts(): number {
    return this.workers.length === 0 ? 1 : (this.workers.length + 1) * CHUNKS_PER_THREAD;
  }

  /**
   * Runs kernel `name` on argsOf(part, parts) for each of `parts` disjoint parts of the work (disjoint outputs per
   * part), claimed by the calling thread and the helpers, and returns when all are done. Throws when a part failed
   * on a helper. `single`: the work is too small to share; it runs here as one part (argsOf(0, 1)).
   */
  run(name: string, argsOf: (part: number, parts: number) => number[], single = false): void {
    const kernel = this.local[name];
    const nameIndex = this.names.indexOf(name);
    if (kernel == null || nameIndex < 0) throw new Error(`train/backends/wasm-simd.ts: unknown kernel ${name}`);
    if (single) {
      kernel(...argsOf(0, 1));
      return;
    }
    const parts = this.parts;
    if (this.broken || this.workers.length === 0) {
      for (let part = 0; part < parts; part++) kernel(...argsOf(part, parts));
      return;
    }
    for (let part = 0; part < parts; part++) {
      const a = argsOf(part, parts);
      if (a.length > MAX_ARGS) throw new Error(`train/backends/wasm-simd.ts: ${name} has more than ${MAX_ARGS} arguments`);
      const base = part * SLOT;
      this.args[base] = nameIndex;
      this.args[base + 1] = a.length;
      this.args.set(a, base + 2);
    }
    this.call = (this.call + 1) & 0x7fff;
    const tag = this.call << 16;
    Atomics.store(this.control, COMPLETED, 0);
    Atomics.store(this.control, FAILED, 0);
    Atomics.store(this.control, CHUNKS, tag | parts);
    Atomics.store(this.control, CLAIM, tag);
    Atomics.notify(this.control, CLAIM);
    let mine = 0;
    try {
      for (;;) {
        const claim = Atomics.load(this.control, CLAIM);
        const part = claim & 0xffff;
        if (part >= parts) break;
        if (Atomics.compareExchange(this.control, CLAIM, claim, claim + 1) !== claim) continue;
        mine++;
        const base = part * SLOT;
        kernel(...this.args.subarray(base + 2, base + 2 + this.args[base + 1]!));
      }
    } finally {
      // Wait for the helpers' chunks even if one of this thread's threw: they are still writing to the heap.
      // The helpers claim whatever this thread left; a chunk it claimed and did not finish (it threw) counts as its own.
      const deadline = Date.now() + HELPER_TIMEOUT_MS;
      for (let done = Atomics.load(this.control, COMPLETED); done + mine < parts; done = Atomics.load(this.control, COMPLETED)) {
        if (Date.now() > deadline) {
          this.broken = true;
          // biome-ignore lint/correctness/noUnsafeFinally: a helper still writing to the heap outranks this thread's own error
          throw new Error(`train/backends/wasm-simd.ts: ${name}: a helper thread did not finish in ${HELPER_TIMEOUT_MS / 1000} s`);
        }
        Atomics.wait(this.control, COMPLETED, done, 100);
      }
    }
    if (Atomics.load(this.control, FAILED) === 1) throw new Error(`train/backends/wasm-simd.ts: ${name} failed on a helper thread`);
  }
}

/** [start, end) of part `part` of `parts` over `count` items (the first parts take one more when it does not divide). */
export function partRange(count: number, parts: number, part: number): [number, number] {
  const base = Math.floor(count / parts),
    extra = count % parts;
  const start = part * base + Math.min(part, extra);
  return [start, start + base + (part < extra ? 1 : 0)];
}

/** The parts of BackendWasm (tfjs-backend-wasm 4.22, dist/backend_wasm.d.ts) the kernels use. */
export interface WasmBackendLike {
  wasm: { HEAPU8: Uint8Array };
  dataIdMap: { get(dataId: object): { memoryOffset: number } | undefined };
  makeOutput(shape: number[], dtype: 'float32'): TensorInfo;
  disposeData(dataId: object, force?: boolean): boolean;
}

/**
 * im2colT, col2imT and col2imRows (assembly/training-kernels.ts): between an image and its im2col matrix for images
 * n0 <= n < n0 + nb, over the part [c0, c1) of the caller's range; `from` is read, `to` written (col2imT accumulates).
 * im2colT and col2imT: a channel-major image [C][N][H][W] and colT [(kh, kw, ci), (n, oh, ow)]; col2imRows: an NHWC
 * image and col [(n, oh, ow), (kh, kw, c)].
 */
type ColumnsKernel = (
  from: number,
  to: number,
  N: number,
  H: number,
  W: number,
  C: number,
  OH: number,
  OW: number,
  KH: number,
  KW: number,
  sh: number,
  sw: number,
  pt: number,
  pl: number,
  n0: number,
  nb: number,
  c0: number,
  c1: number,
) => void;

/** The exports of assembly/training-kernels.ts; every pointer is a byte offset on the wasm backend's heap. */
export interface SimdKernels {
  predictionVectors(u: number, W: number, uHat: number, N: number, I: number, P: number, K: number): void;
  predictionVectorsGrad(u: number, W: number, dUHat: number, dU: number, dW: number, N: number, I: number, P: number, K: number, i0: number, i1: number): void;
  routingScratchFloats(I: number, J: number, D: number, R: number): number;
  routingForward(uHat: number, v: number, c: number, scratch: number, N: number, I: number, J: number, D: number, R: number, eps: number): void;
  routingBackward(uHat: number, dV: number, dC: number, dU: number, scratch: number, N: number, I: number, J: number, D: number, R: number, eps: number): void;
  adam(p: number, g: number, m: number, v: number, pOut: number, n: number, lr: number, beta1: number, beta2: number, epsilon: number): void;
  transpose(src: number, srcStride: number, dst: number, dstStride: number, r0: number, r1: number, cols: number): void;
  /** dst[b] = src[b]^T for the [rows, cols] matrices b0 <= b < b1 of a batch. */
  transposeBatch(src: number, dst: number, rows: number, cols: number, b0: number, b1: number): void;
  /** Rows c0 <= t < c1 of colT from the channel-major image xT (im2col). */
  im2colT: ColumnsKernel;
  nhwcToChwn(x: number, xp: number, N: number, H: number, W: number, C: number, Hc: number, Wc: number, pt: number, pl: number, h0: number, h1: number): void;
  /** Channels c0 <= ci < c1 of the channel-major dxT, accumulated from colT (col2im). */
  col2imT: ColumnsKernel;
  /** Rows u0 <= u < u1 (u = image * H + h) of the images n0..n0+nb of the NHWC dx, from col [(n, oh, ow), (kh, kw, c)] (col2im). */
  col2imRows: ColumnsKernel;
  /** dst[c] = sum_r src[r, c] for columns c0 <= c < c1 of a row-major [rows, cols] matrix. */
  columnSums(src: number, dst: number, rows: number, cols: number, c0: number, c1: number): void;
  /** out[k] = a[k] b[k], k < n. */
  multiply(a: number, b: number, out: number, n: number): void;
}

const KERNEL_NAMES = [
  'predictionVectors',
  'predictionVectorsGrad',
  'routingForward',
  'routingBackward',
  'adam',
  'transpose',
  'transposeBatch',
  'nhwcToChwn',
  'col2imT',
  'col2imRows',
  'im2colT',
  'columnSums',
  'multiply',
] as const;

/**
 * Where the wasm backend's Emscripten module keeps its WebAssembly.Memory (tfjs-backend-wasm 4.22): the threaded
 * build, which creates the memory itself, as wasmMemory; the single-threaded one among its module exports.
 */
type BackendWithMemory = WasmBackendLike & { wasm: { wasmMemory?: unknown; asm?: { memory?: unknown } } };

/** The kernels of one backend memory: the calling thread's instance and the threads that share the work. */
export interface KernelSet {
  local: SimdKernels;
  threads: KernelThreads;
}

const instances = new WeakMap<WebAssembly.Memory, KernelSet>();

/**
 * The kernels instantiated on this backend's memory (once per memory: a new backend instance gets its own). On the
 * threaded build, whose memory is shared, the work is split over as many threads as the backend itself uses.
 */
export function simdKernels(backend: WasmBackendLike): KernelSet {
  const { wasmMemory, asm } = (backend as BackendWithMemory).wasm;
  const memory = wasmMemory instanceof WebAssembly.Memory ? wasmMemory : asm?.memory;
  if (!(memory instanceof WebAssembly.Memory)) {
    throw new Error(
      'train/backends/wasm-simd.ts: this tfjs-backend-wasm build does not expose its memory (wasmMemory or asm.memory); ' +
        'install the version in package.json',
    );
  }
  let set = instances.get(memory);
  if (set == null) {
    // The threaded build's memory is shared, and a module must declare the kind of memory it imports.
    const shared = typeof SharedArrayBuffer !== 'undefined' && memory.buffer instanceof SharedArrayBuffer;
    const file = new URL(`./kernels/training-kernels${shared ? '-shared' : ''}.wasm`, import.meta.url);
    const module = new WebAssembly.Module(readFileSync(file));
    const local = new WebAssembly.Instance(module, { env: { memory } }).exports as unknown as SimdKernels;
    const helpers = shared ? Math.max(0, getThreadsCount() - 1) : 0;
    const threads = new KernelThreads(local as unknown as Record<string, (...args: number[]) => unknown>, module, memory, KERNEL_NAMES, helpers);
    set = { local, threads };
    instances.set(memory, set);
  }
  return set;
}

/** A tensor's byte offset on the wasm heap. */
export function pointer(backend: WasmBackendLike, info: TensorInfo): number {
  const entry = backend.dataIdMap.get(info.dataId);
  if (entry == null) throw new Error('train/backends/wasm-simd.ts: tensor is not on the wasm backend');
  return entry.memoryOffset;
}

/** A tensor's values (the first `size`, default all) as a view of the wasm heap. */
export function heapF32(backend: WasmBackendLike, info: TensorInfo, size = info.shape.reduce((a, b) => a * b, 1)): Float32Array {
  // Read HEAPU8 afresh every time: a malloc may have grown (and so replaced) the heap's buffer.
  return new Float32Array(backend.wasm.HEAPU8.buffer, pointer(backend, info), size);
}

/** dst[b] = src[b]^T for a batch of row-major [rows, cols] matrices (src [batch, rows, cols] -> dst [batch, cols, rows]). */
export function transposeBatchOnHeap(backend: WasmBackendLike, src: number, batch: number, rows: number, cols: number, dst: number): void {
  if (batch === 1) return transposeOnHeap(backend, src, rows, cols, dst);
  const { threads } = simdKernels(backend);
  threads.run('transposeBatch', (part, parts) => [src, dst, rows, cols, ...partRange(batch, parts, part)], batch * rows * cols < 1 << 14);
}

/** dst = src^T for a row-major [rows, cols] matrix at byte offset src (dst is [cols, rows]), rows shared by threads. */
export function transposeOnHeap(backend: WasmBackendLike, src: number, rows: number, cols: number, dst: number): void {
  const { threads } = simdKernels(backend);
  // Small matrices in one part: waking a helper costs more than the copy.
  const single = rows * cols < 1 << 14;
  threads.run('transpose', (part, parts) => [src, cols, dst, rows, ...partRange(rows, parts, part), cols], single);
}
