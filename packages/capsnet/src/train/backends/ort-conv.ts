// The wasm backend's convolutions, run by onnxruntime-node's CPU provider.
//
// Why: the convolutions are 87-94% of a CapsNet training step, and in the wasm backend they run on XNNPACK's
// 128-bit wasm SIMD kernels. onnxruntime-node, already a dependency of this package for export checks and parity,
// carries MLAS: native GEMMs for the machine's own vector width (AVX2, AVX-512). The three kernels a convolution
// layer needs in training (forward, filter gradient, input gradient) are each one small ONNX graph here, run on
// tensors copied from and to the wasm heap; everything else (autodiff, the capsule kernels, Adam) stays in tfjs.
//
//   Conv2D                 y  = Conv(x, W)                                          (ONNX Conv, NCHW)
//   Conv2DBackpropFilter   dW = Conv(x^T, dy^T, dilations = strides)                x as [C, N, H, W], dy as [CO, N, OH, OW]
//                               dW[ci, co, kh, kw] = sum_{n,oh,ow} x[n, ci, oh*s+kh-p, ow*s+kw-p] dy[n, co, oh, ow]
//                               (x cut to the rows an output reads)
//   Conv2DBackpropInput    dx = ConvTranspose(dy, W)                                (ONNX ConvTranspose)
//
// Where a patch row is long (PrimaryCaps: 9 x 256 floats, see im2colPays) the forward and the input gradient are
// instead one ONNX Gemm per chunk of images, on tfjs's own layouts (no transposes), with an im2col before or a
// col2im after (the col2im in wasm SIMD on the backend's threads, assembly/training-kernels.ts's col2imRows):
//
//   Conv2D                 Y[P, CO] = Xcol[P, KH*KW*C] W[KH*KW*C, CO]              (Y is NHWC, W is HWIO as stored)
//   Conv2DBackpropInput    col[P, KH*KW*C] = dY[P, CO] W[KH*KW*C, CO]^T, dx = col2im(col)      (dY and dx NHWC)
//
// tfjs is NHWC with HWIO filters, ONNX's convolutions NCHW with OIHW filters: the layouts change on the wasm heap,
// by the SIMD transposes of train/backends/wasm-simd.ts on the backend's threads (ORT's own Transpose is several
// times slower on these shapes: docs/benchmarks.md), and a filter's OIHW copy is kept while its tensor lives, for the
// forward and input gradient of a step. The graphs are the bare ops. Large arrays are never allocated per call: ORT
// runs a chunk of images at a time (byChunks) and the off-heap arrays are reused (buffer), because past glibc's 32 MB
// mmap threshold every allocation is fresh pages, and first touching them cost more than the convolutions at batch 128.
//
// tfjs kernels are synchronous, so the sessions are onnxruntime-node's native ones, run synchronously (ort-binding.ts).
// A session is made per convolution shape (batch size symbolic); where loadModel returns a promise
// (1.31) the session is used at once all the same (it is), and a call that fails before the promise settles runs on
// the wasm kernel it replaces. Anything these graphs do not cover (NCHW, dilations, non-float32) runs on those kernels
// too; so does every shape after a failure, which is logged once. CAPSNET_CONVOLUTIONS=wasm turns this off.

import * as tf from '@tensorflow/tfjs-core';
import { backend_util } from '@tensorflow/tfjs-core';
import type { KernelFunc, NamedAttrMap, NamedTensorInfoMap, TensorInfo } from '@tensorflow/tfjs-core';
import { Tensor as OrtTensor } from 'onnxruntime-node';
import { cpuSessionOptions, loadBinding, type NativeSession } from './ort-binding.ts';
import {
  col2imGraph,
  filterGradRows,
  type Geometry,
  geometry,
  graphFor,
  im2colGraph,
  im2colPays,
  KINDS,
  type Kind,
  OUTPUT_BYTES_PER_CALL,
  ROWS_PER_CHUNK,
  toColumns,
} from './ort-conv-graphs.ts';
import { heapF32, partRange, pointer, simdKernels, transposeBatchOnHeap, transposeOnHeap, type WasmBackendLike } from './wasm-simd.ts';

interface Entry {
  session?: NativeSession;
  /** loadModel's promise has not settled (onnxruntime-node 1.31 returns one; the model is usable at once all the same). */
  loading?: boolean;
  failed?: string;
}

export interface OrtConvolutions {
  /** Calls that ran on onnxruntime, and calls that ran on the replaced wasm kernels (not ready, unsupported, failed). */
  readonly calls: { ort: number; wasm: number };
  /** Resolves when every session asked for so far has loaded (tests and benches: the next calls run on ORT). */
  ready(): Promise<void>;
  /** Puts the replaced kernels back. */
  unregister(): void;
  /** The kernel functions registered for the wasm backend. */
  readonly kernels: Record<Kind, KernelFunc>;
}

/** Tests and benches: the forward's and input gradient's path ('auto': the GEMMs where im2colPays); bytes per ORT call. */
export interface OrtConvolutionTuning {
  im2col?: 'auto' | 'always' | 'never';
  /** The most one ORT Conv or ConvTranspose call writes, and one heap transpose moves (default OUTPUT_BYTES_PER_CALL). */
  bytesPerCall?: number;
}

/** A kernel run as GEMMs on tfjs's own layouts (see im2colPays): session, backend, geometry, batch size, inputs. */
type ViaGemm = (
  session: NativeSession,
  backend: WasmBackendLike,
  g: Geometry,
  N: number,
  t: { x?: TensorInfo; dy?: TensorInfo; filter?: TensorInfo },
) => TensorInfo;

/** A float32 ORT tensor over `data` (no copy). */
const tensor = (data: Float32Array, dims: number[]) => new OrtTensor('float32', data, dims);

let active: OrtConvolutions | undefined;

/** Whether onnxruntime's kernels are the wasm backend's convolutions now. */
export function ortConvolutionsActive(): boolean {
  return active !== undefined && KINDS.every((kind) => tf.getKernel(kind, 'wasm')?.kernelFunc === active!.kernels[kind]);
}

/**
 * Replaces the wasm backend's Conv2D, Conv2DBackpropFilter and Conv2DBackpropInput with onnxruntime-node's CPU
 * kernels on `threads` threads. Throws a one-line error when onnxruntime-node's binding cannot be loaded (the caller
 * then keeps the wasm kernels and says why). Idempotent.
 */
export function registerOrtConvolutions(threads: number, log: (line: string) => void, tuning: OrtConvolutionTuning = {}): OrtConvolutions {
  const im2col = tuning.im2col ?? 'auto';
  const bytesPerCall = tuning.bytesPerCall ?? OUTPUT_BYTES_PER_CALL;
  if (active) return active;
  const native = loadBinding();
  native.initOrt();
  const options = cpuSessionOptions(threads);
  const entries = new Map<string, Entry>();
  const loading: Promise<unknown>[] = [];
  const calls = { ort: 0, wasm: 0 };
  const replaced = new Map<Kind, KernelFunc>();

  /** The session for `key`, made from `graph()` on first use. */
  const entryFor = (key: string, graph: () => Uint8Array): Entry => {
    let entry = entries.get(key);
    if (!entry) {
      entry = {};
      entries.set(key, entry);
      const target = entry;
      try {
        const bytes = graph();
        const session = new native.binding.InferenceSession();
        const loaded = session.loadModel(bytes.buffer, bytes.byteOffset, bytes.byteLength, options);
        // Used at once either way, so that every step of a run (and of its resume) runs the same kernels.
        target.session = session;
        if (loaded && typeof (loaded as Promise<unknown>).then === 'function') {
          target.loading = true;
          loading.push(
            (loaded as Promise<unknown>).then(
              () => (target.loading = false),
              (e) => fail(target, key, e),
            ),
          );
        }
      } catch (e) {
        fail(target, key, e);
      }
    }
    return entry;
  };
  const fail = (entry: Entry, key: string, e: unknown) => {
    entry.session = undefined;
    entry.failed = e instanceof Error ? e.message.split('\n')[0]! : String(e);
    log(`convolutions: onnxruntime failed on ${key} (${entry.failed}); that shape runs on the wasm kernels`);
  };

  /**
   * Reused off-heap buffers (onnxruntime-node refuses the heap's SharedArrayBuffer): grown, never shrunk. Why reuse:
   * glibc maps every allocation over 32 MB afresh, and first touching fresh pages cost ~150 ms per 52 MB here (VM
   * page faults), more than the convolution that fills them (docs/benchmarks.md).
   */
  const buffers = new Map<string, Float32Array>();
  const buffer = (name: string, size: number): Float32Array => {
    let b = buffers.get(name);
    if (!b || b.length < size) {
      b = new Float32Array(size);
      buffers.set(name, b);
    }
    return b.subarray(0, size);
  };

  /** A float32 scratch tensor on the wasm heap (release with backend.disposeData). */
  const scratch = (backend: WasmBackendLike, shape: number[]): TensorInfo => backend.makeOutput(shape, 'float32');
  /** A copy off the heap: onnxruntime-node refuses views of the threaded build's SharedArrayBuffer. */
  const copyOff = (backend: WasmBackendLike, info: TensorInfo): Float32Array => {
    const copy = heapF32(backend, info).slice();
    backend.disposeData(info.dataId);
    return copy;
  };
  /** ORT's result [batch, rows, cols] onto the heap as tfjs's [batch, cols, rows] (rows = channels). */
  const backToHeap = (backend: WasmBackendLike, data: unknown, batch: number, rows: number, cols: number, shape: number[]): TensorInfo => {
    const onHeap = scratch(backend, [batch, rows, cols]);
    heapF32(backend, onHeap).set(data as Float32Array);
    const out = backend.makeOutput(shape, 'float32');
    transposeBatchOnHeap(backend, pointer(backend, onHeap), batch, rows, cols, pointer(backend, out));
    backend.disposeData(onHeap.dataId);
    return out;
  };
  /** The OIHW copy of an HWIO filter, kept while the filter tensor lives (the forward and input gradient share it). */
  const oihwCache = new WeakMap<object, Float32Array>();
  const oihw = (backend: WasmBackendLike, filter: TensorInfo): Float32Array => {
    const cached = oihwCache.get(filter.dataId);
    if (cached) return cached;
    const [KH, KW, C, CO] = filter.shape as [number, number, number, number];
    // [KH*KW*C, CO] -> [CO, KH*KW, C], then each output channel's [KH*KW, C] -> [C, KH*KW].
    const ohwi = scratch(backend, [CO, KH * KW, C]);
    transposeOnHeap(backend, pointer(backend, filter), KH * KW * C, CO, pointer(backend, ohwi));
    const oihwOnHeap = scratch(backend, [CO, C, KH * KW]);
    transposeBatchOnHeap(backend, pointer(backend, ohwi), CO, KH * KW, C, pointer(backend, oihwOnHeap));
    backend.disposeData(ohwi.dataId);
    const data = copyOff(backend, oihwOnHeap);
    oihwCache.set(filter.dataId, data);
    return data;
  };
  /** tfjs's [batch, rows, cols] as ONNX's [batch, cols, rows], in the reused off-heap buffer `name`. */
  const channelsFirst = (name: string, backend: WasmBackendLike, info: TensorInfo, batch: number, rows: number, cols: number): Float32Array => {
    const onHeap = scratch(backend, [batch, cols, rows]);
    transposeBatchOnHeap(backend, pointer(backend, info), batch, rows, cols, pointer(backend, onHeap));
    const out = buffer(name, batch * rows * cols);
    out.set(heapF32(backend, onHeap));
    backend.disposeData(onHeap.dataId);
    return out;
  };

  /**
   * x [N, H, W, C] as ONNX's [C, N, rows, cols] in the reused off-heap buffer `name`, cut to each image's first
   * `rows` rows and `cols` columns; transposed a chunk of images at a time on the heap.
   */
  const channelsFirstByImages = (
    name: string,
    backend: WasmBackendLike,
    x: TensorInfo,
    N: number,
    H: number,
    W: number,
    C: number,
    rows: number,
    cols: number,
  ) => {
    const P = rows * cols;
    const out = buffer(name, C * N * P);
    const chunk = Math.max(1, Math.floor(bytesPerCall / (4 * P * C)));
    const cut = scratch(backend, [Math.min(chunk, N) * P, C]);
    const part = scratch(backend, [C, Math.min(chunk, N) * P]);
    const heap = backend.wasm.HEAPU8;
    const [from, to] = [pointer(backend, x), pointer(backend, cut)];
    const run = 4 * cols * C;
    for (let n0 = 0; n0 < N; n0 += chunk) {
      const count = Math.min(chunk, N - n0);
      let source = from + 4 * n0 * H * W * C;
      if (rows < H || cols < W) {
        for (let n = 0; n < count; n++) {
          for (let h = 0; h < rows; h++) {
            const src = from + 4 * ((n0 + n) * H + h) * W * C;
            heap.copyWithin(to + (n * rows + h) * run, src, src + run);
          }
        }
        source = to;
      }
      transposeOnHeap(backend, source, count * P, C, pointer(backend, part));
      const parted = heapF32(backend, part, C * count * P);
      for (let c = 0; c < C; c++) out.set(parted.subarray(c * count * P, (c + 1) * count * P), (c * N + n0) * P);
    }
    backend.disposeData(cut.dataId);
    backend.disposeData(part.dataId);
    return out;
  };

  /** Conv2D as im2col + GEMM, a chunk of images at a time (see im2colPays). */
  const forwardByIm2col: ViaGemm = (session, backend, g, N, t) => {
    const { KH, KW, C, CO, OH, OW } = g;
    const KK = KH * KW * C;
    const positions = OH * OW;
    const chunk = Math.max(1, Math.floor(ROWS_PER_CHUNK / positions));
    const filter = hwio(backend, t.filter!);
    // toColumns reads the heap directly: nothing allocates on it before the last chunk is cut.
    const x = heapF32(backend, t.x!);
    const col = buffer('col', Math.min(chunk, N) * positions * KK);
    const y = buffer('y', N * positions * CO);
    for (let n0 = 0; n0 < N; n0 += chunk) {
      const count = Math.min(chunk, N - n0);
      const rows = count * positions;
      toColumns(x, g, n0, count, col);
      const out = y.subarray(n0 * positions * CO, (n0 + count) * positions * CO);
      // The output written in place (a preallocated fetch): no per-chunk result to allocate and copy.
      session.run({ xcol: tensor(col.subarray(0, rows * KK), [rows, KK]), filter: tensor(filter, [KK, CO]) }, { y: tensor(out, [rows, CO]) }, {});
    }
    const result = backend.makeOutput([N, OH, OW, CO], 'float32');
    heapF32(backend, result).set(y);
    return result;
  };
  /** Conv2DBackpropInput as one GEMM per chunk of images + a col2im on the kernel threads (see im2colPays). */
  const inputGradByCol2im: ViaGemm = (session, backend, g, N, t) => {
    const { H, W, C, KH, KW, CO, OH, OW, sh, sw, pt, pl } = g;
    const KK = KH * KW * C;
    const positions = OH * OW;
    const chunk = Math.max(1, Math.floor(ROWS_PER_CHUNK / positions));
    const maxRows = Math.min(chunk, N) * positions;
    const filter = tensor(hwio(backend, t.filter!), [KK, CO]);
    const dyRows = buffer('dy rows', maxRows * CO);
    const col = buffer('col', maxRows * KK);
    const dx = backend.makeOutput([N, H, W, C], 'float32');
    // ORT writes off the heap (it refuses the shared heap's views); the col2im kernel reads a copy on it.
    const colOnHeap = scratch(backend, [maxRows, KK]);
    const [dxAt, colAt] = [pointer(backend, dx), pointer(backend, colOnHeap)];
    const { threads } = simdKernels(backend);
    // Views taken after the last allocation on the heap (a growing heap would detach them).
    const dyOnHeap = heapF32(backend, t.dy!);
    const colView = heapF32(backend, colOnHeap);
    for (let n0 = 0; n0 < N; n0 += chunk) {
      const count = Math.min(chunk, N - n0);
      const rows = count * positions;
      dyRows.set(dyOnHeap.subarray(n0 * positions * CO, (n0 + count) * positions * CO));
      session.run({ dy: tensor(dyRows.subarray(0, rows * CO), [rows, CO]), filter }, { col: tensor(col.subarray(0, rows * KK), [rows, KK]) }, {});
      colView.set(col.subarray(0, rows * KK));
      threads.run('col2imRows', (part, parts) => [colAt, dxAt, N, H, W, C, OH, OW, KH, KW, sh, sw, pt, pl, n0, count, ...partRange(count * H, parts, part)]);
    }
    backend.disposeData(colOnHeap.dataId);
    return dx;
  };
  /** An HWIO filter's values off the heap, kept while the filter tensor lives (as oihw's are). */
  const hwioCache = new WeakMap<object, Float32Array>();
  const hwio = (backend: WasmBackendLike, filter: TensorInfo): Float32Array => {
    let data = hwioCache.get(filter.dataId);
    if (!data) {
      data = heapF32(backend, filter).slice();
      hwioCache.set(filter.dataId, data);
    }
    return data;
  };

  /**
   * Runs a batch through `run` a chunk of images at a time, each chunk's output written in place into one reused
   * off-heap buffer [N, outPerImage]. Why: ORT allocates what its Conv and ConvTranspose use per call, and past 32 MB
   * that memory is fresh pages every call (see `buffer`): conv1's forward at batch 128 took 160 ms in one call, 13 ms
   * in chunks of 32 images; PrimaryCaps' input gradient 630 -> 420 ms (docs/benchmarks.md).
   */
  const byChunks = (N: number, outPerImage: number, run: (n0: number, count: number, out: Float32Array) => void): Float32Array => {
    const chunk = Math.max(1, Math.floor(bytesPerCall / (4 * outPerImage)));
    const out = buffer('chunked', N * outPerImage);
    for (let n0 = 0; n0 < N; n0 += chunk) {
      const count = Math.min(chunk, N - n0);
      run(n0, count, out.subarray(n0 * outPerImage, (n0 + count) * outPerImage));
    }
    return out;
  };

  /** One kernel on ORT: the layouts changed on the heap, the bare op in ORT, the result back in tfjs's layout. */
  const runOnOrt = (
    kind: Kind,
    session: NativeSession,
    backend: WasmBackendLike,
    g: Geometry,
    N: number,
    t: { x?: TensorInfo; dy?: TensorInfo; filter?: TensorInfo },
  ): TensorInfo => {
    const { H, W, C, KH, KW, CO, OH, OW } = g;
    if (kind === 'Conv2D') {
      const x = channelsFirst('x, channels first', backend, t.x!, N, H * W, C);
      const filter = tensor(oihw(backend, t.filter!), [CO, C, KH, KW]);
      const y = byChunks(N, CO * OH * OW, (n0, count, out) => {
        session.run({ x: tensor(x.subarray(n0 * C * H * W, (n0 + count) * C * H * W), [count, C, H, W]), filter }, { y: tensor(out, [count, CO, OH, OW]) }, {});
      });
      return backToHeap(backend, y, N, CO, OH * OW, [N, OH, OW, CO]);
    }
    if (kind === 'Conv2DBackpropFilter') {
      const { rows, cols } = filterGradRows(g);
      const feeds = {
        x: tensor(channelsFirstByImages('x, channels first', backend, t.x!, N, H, W, C, rows.size, cols.size), [C, N, rows.size, cols.size]),
        dy: tensor(channelsFirstByImages('dy, channels first', backend, t.dy!, N, OH, OW, CO, OH, OW), [CO, N, OH, OW]),
      };
      const dw = session.run(feeds, { dw: null }, {}).dw!.data;
      return backToHeap(backend, dw, 1, C * CO, KH * KW, [KH, KW, C, CO]);
    }
    const dy = channelsFirst('dy, channels first', backend, t.dy!, N, OH * OW, CO);
    const filter = tensor(oihw(backend, t.filter!), [CO, C, KH, KW]);
    const dx = byChunks(N, C * H * W, (n0, count, out) => {
      session.run(
        { dy: tensor(dy.subarray(n0 * CO * OH * OW, (n0 + count) * CO * OH * OW), [count, CO, OH, OW]), filter },
        { dx: tensor(out, [count, C, H, W]) },
        {},
      );
    });
    return backToHeap(backend, dx, N, C, H * W, [N, H, W, C]);
  };

  /** The kernels that run as GEMMs where im2colPays, each with its graph (the filter gradient keeps its Conv). */
  const gemmPaths: Partial<Record<Kind, { graph: () => Uint8Array; run: ViaGemm }>> = {
    Conv2D: { graph: im2colGraph, run: forwardByIm2col },
    Conv2DBackpropInput: { graph: col2imGraph, run: inputGradByCol2im },
  };

  const wrap = (kind: Kind): KernelFunc => {
    const previous = replaced.get(kind)!;
    return ((args: { inputs: NamedTensorInfoMap; backend: unknown; attrs?: NamedAttrMap }) => {
      const backend = args.backend as WasmBackendLike;
      const attrs = args.attrs as unknown as {
        strides: [number, number] | number;
        pad: 'valid' | 'same' | number | backend_util.ExplicitPadding;
        dataFormat?: 'NHWC' | 'NCHW';
        dilations?: [number, number] | number;
        dimRoundingMode?: 'floor' | 'round' | 'ceil';
        filterShape?: [number, number, number, number];
        inputShape?: [number, number, number, number];
      };
      const inputs = Object.values(args.inputs) as TensorInfo[];
      const dilations = attrs.dilations ?? 1;
      const plain =
        (attrs.dataFormat ?? 'NHWC') === 'NHWC' &&
        (dilations === 1 || (Array.isArray(dilations) && dilations[0] === 1 && dilations[1] === 1)) &&
        inputs.every((t) => t.dtype === 'float32');
      if (plain) {
        const { x, filter } = args.inputs as { x?: TensorInfo; filter?: TensorInfo };
        const xShape = (kind === 'Conv2DBackpropInput' ? attrs.inputShape : x!.shape) as [number, number, number, number];
        const fShape = (kind === 'Conv2DBackpropFilter' ? attrs.filterShape : filter!.shape) as [number, number, number, number];
        const ci = backend_util.computeConv2DInfo(xShape, fShape, attrs.strides, 1, attrs.pad, attrs.dimRoundingMode, false, 'channelsLast');
        const g = geometry(ci);
        const key = `${kind} ${Object.values(g).join(',')}`;
        const gemm = im2col === 'always' || (im2col === 'auto' && im2colPays(g)) ? gemmPaths[kind] : undefined;
        const entry = gemm ? entryFor(`${key} gemm`, gemm.graph) : entryFor(key, () => graphFor(kind, g));
        if (entry.session) {
          try {
            const t = args.inputs as { x?: TensorInfo; dy?: TensorInfo; filter?: TensorInfo };
            const out = gemm ? gemm.run(entry.session, backend, g, ci.batchSize, t) : runOnOrt(kind, entry.session, backend, g, ci.batchSize, t);
            calls.ort++;
            return out;
          } catch (e) {
            // Still loading: the wasm kernel this time; otherwise that shape stays on wasm from now on.
            if (!entry.loading) fail(entry, key, e);
          }
        }
      }
      calls.wasm++;
      return previous(args as never);
    }) as unknown as KernelFunc;
  };

  for (const kind of KINDS) {
    const kernel = tf.getKernel(kind, 'wasm');
    if (kernel == null) throw new Error(`the wasm backend has no ${kind} kernel to replace`);
    replaced.set(kind, kernel.kernelFunc);
  }
  const kernels = Object.fromEntries(KINDS.map((kind) => [kind, wrap(kind)])) as Record<Kind, KernelFunc>;
  for (const kind of KINDS) {
    tf.unregisterKernel(kind, 'wasm');
    tf.registerKernel({ kernelName: kind, backendName: 'wasm', kernelFunc: kernels[kind] });
  }
  active = {
    kernels,
    calls,
    ready: async () => {
      await Promise.all(loading);
    },
    unregister: () => {
      for (const kind of KINDS) {
        tf.unregisterKernel(kind, 'wasm');
        tf.registerKernel({ kernelName: kind, backendName: 'wasm', kernelFunc: replaced.get(kind)! });
      }
      active = undefined;
    },
  };
  return active;
}
