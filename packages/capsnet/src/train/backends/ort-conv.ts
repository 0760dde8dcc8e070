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
//                               (x cut to the rows an output reads; one ORT thread, see filterGradOptions)
//   Conv2DBackpropInput    dx = ConvTranspose(dy, W)                                (ONNX ConvTranspose)
//
// tfjs is NHWC with HWIO filters, ONNX's convolutions NCHW with OIHW filters: the layouts change on the wasm heap,
// by the SIMD transposes of train/backends/wasm-simd.ts on the backend's threads (ORT's own Transpose is several
// times slower on these shapes: docs/benchmarks.md), and a filter's OIHW copy is kept while its tensor lives, for the forward and input gradient of a
// step. The graphs are the bare ops.
//
// tfjs kernels are synchronous and onnxruntime-node's InferenceSession.run is a promise; the promise wraps a
// synchronous call into the native binding (onnxruntime-node's dist/backend.js, 1.30 and 1.31), which this module
// calls directly. A session is made per convolution shape (batch size symbolic); where loadModel returns a promise
// (1.31) the session is used at once all the same (it is), and a call that fails before the promise settles runs on
// the wasm kernel it replaces. Anything these graphs do not cover (NCHW, dilations, non-float32) runs on those kernels
// too; so does every shape after a failure, which is logged once. CAPSNET_CONVOLUTIONS=wasm turns this off.

import { createRequire } from 'node:module';
import * as tf from '@tensorflow/tfjs-core';
import { backend_util } from '@tensorflow/tfjs-core';
import type { KernelFunc, NamedAttrMap, NamedTensorInfoMap, TensorInfo } from '@tensorflow/tfjs-core';
import { Tensor as OrtTensor } from 'onnxruntime-node';
import { GraphBuilder, buildModel } from '../../export/graph-builder.ts';
import { encodeModel } from '../../export/onnx-schema.ts';
import { heapF32, pointer, transposeBatchOnHeap, transposeOnHeap, type WasmBackendLike } from './wasm-simd.ts';

/** The native session of onnxruntime-node's binding: what its InferenceSession wraps. */
interface NativeSession {
  loadModel(buffer: ArrayBufferLike, byteOffset: number, byteLength: number, options: object): unknown;
  run(feeds: Record<string, OrtTensor>, fetches: Record<string, null>, options: object): Record<string, { data: unknown; dims: readonly number[] }>;
  dispose?(): void;
}

interface Binding {
  binding: { InferenceSession: new () => NativeSession };
  initOrt(): void;
}

function loadBinding(): Binding {
  const require = createRequire(import.meta.url);
  const loaded = require('onnxruntime-node/dist/binding.js') as Partial<Binding>;
  if (typeof loaded.initOrt !== 'function' || typeof loaded.binding?.InferenceSession !== 'function') {
    throw new Error("onnxruntime-node's dist/binding.js no longer exports { binding.InferenceSession, initOrt }");
  }
  return loaded as Binding;
}

type Kind = 'Conv2D' | 'Conv2DBackpropFilter' | 'Conv2DBackpropInput';
const KINDS: Kind[] = ['Conv2D', 'Conv2DBackpropFilter', 'Conv2DBackpropInput'];

/** A convolution's geometry: tfjs's Conv2DInfo reduced to what the graphs need (N is symbolic in them). */
interface Geometry {
  H: number;
  W: number;
  C: number;
  KH: number;
  KW: number;
  CO: number;
  OH: number;
  OW: number;
  sh: number;
  sw: number;
  pt: number;
  pl: number;
}

function geometry(ci: backend_util.Conv2DInfo): Geometry {
  return {
    H: ci.inHeight,
    W: ci.inWidth,
    C: ci.inChannels,
    KH: ci.filterHeight,
    KW: ci.filterWidth,
    CO: ci.outChannels,
    OH: ci.outHeight,
    OW: ci.outWidth,
    sh: ci.strideHeight,
    sw: ci.strideWidth,
    pt: ci.padInfo.top,
    pl: ci.padInfo.left,
  };
}

/**
 * ConvTranspose's far padding and output_padding that make an output of `size` when the transposed convolution
 * spans `span` pixels after the near padding: trim the excess, or add the rows a stride skipped at the end.
 */
function transposedEnd(span: number, size: number): { pad: number; outputPadding: number } {
  return span >= size ? { pad: span - size, outputPadding: 0 } : { pad: 0, outputPadding: size - span };
}

/**
 * The filter gradient's rows (and columns) of x: output row kh reads padded rows kh + oh*sh, so the "image" needs
 * (OH-1)*sh + KH rows after the near padding: x's first `size` of them, then `pad` zero rows. (x is cut on the heap:
 * ORT's Slice is slow on these shapes, docs/benchmarks.md.)
 */
function filterGradRows(g: Geometry): { rows: { size: number; pad: number }; cols: { size: number; pad: number } } {
  const needH = (g.OH - 1) * g.sh + g.KH - g.pt;
  const needW = (g.OW - 1) * g.sw + g.KW - g.pl;
  return {
    rows: { size: Math.min(g.H, needH), pad: Math.max(0, needH - g.H) },
    cols: { size: Math.min(g.W, needW), pad: Math.max(0, needW - g.W) },
  };
}

/** The ONNX graph for one kernel at one geometry, in ONNX's layouts (the batch 'N' symbolic). */
function graphFor(kind: Kind, g: Geometry): Uint8Array {
  const b = new GraphBuilder(`capsnet-${kind}`);
  const { H, W, C, KH, KW, CO, OH, OW, sh, sw, pt, pl } = g;
  if (kind === 'Conv2D') {
    const x = b.input('x', ['N', C, H, W], 'NCHW');
    const f = b.input('filter', [CO, C, KH, KW], 'OIHW');
    // Far padding: what tfjs's 'same' adds beyond the near side (ORT refuses negative pads; extra rows are never read).
    const pb = Math.max(0, (OH - 1) * sh + KH - H - pt);
    const pr = Math.max(0, (OW - 1) * sw + KW - W - pl);
    const [y] = b.node('Conv', [x, f], { kernel_shape: [KH, KW], strides: [sh, sw], pads: [pt, pl, pb, pr], dilations: [1, 1], group: 1 }, { output: 'y' });
    b.output(y!, ['N', CO, OH, OW], 'NCHW');
  } else if (kind === 'Conv2DBackpropFilter') {
    const { rows, cols } = filterGradRows(g);
    const x = b.input('x', [C, 'N', rows.size, cols.size], 'x with channels first (CNHW), cut to the rows and columns an output reads');
    const dy = b.input('dy', [CO, 'N', OH, OW], 'dy with channels first');
    // The "image" is x with channels as the batch and images as channels; the "kernel" is dy, dilated by the stride.
    const [dw] = b.node(
      'Conv',
      [x, dy],
      { kernel_shape: [OH, OW], strides: [1, 1], pads: [pt, pl, rows.pad, cols.pad], dilations: [sh, sw], group: 1 },
      { output: 'dw' },
    );
    b.output(dw!, [C, CO, KH, KW], 'IOHW');
  } else {
    const dy = b.input('dy', ['N', CO, OH, OW], 'NCHW');
    const f = b.input('filter', [CO, C, KH, KW], 'OIHW');
    // ConvTranspose covers (O-1)*s + K - near - far pixels; output_padding adds the rows a stride skipped at the end.
    const bottom = transposedEnd((OH - 1) * sh + KH - pt, H);
    const right = transposedEnd((OW - 1) * sw + KW - pl, W);
    const [dx] = b.node(
      'ConvTranspose',
      [dy, f],
      {
        kernel_shape: [KH, KW],
        strides: [sh, sw],
        pads: [pt, pl, bottom.pad, right.pad],
        output_padding: [bottom.outputPadding, right.outputPadding],
        dilations: [1, 1],
        group: 1,
      },
      { output: 'dx' },
    );
    b.output(dx!, ['N', C, H, W], 'NCHW');
  }
  return encodeModel(buildModel(b.graph(), { producerName: 'capsnet-onnx training kernels', producerVersion: '1' }));
}

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
export function registerOrtConvolutions(threads: number, log: (line: string) => void): OrtConvolutions {
  if (active) return active;
  const native = loadBinding();
  native.initOrt();
  const options = {
    executionProviders: ['cpu'],
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: 'all',
    // ORT's pool would otherwise spin after each run, taking the cores from the wasm kernels that follow.
    extra: { session: { intra_op: { allow_spinning: '0' } } },
  };
  // The filter gradient on one thread: its "images" are x's channels (256 at PrimaryCaps), each a GEMM too small to
  // split, and ORT splits each one, so the threads meet 256 times a call: two threads were slower than one
  // (docs/benchmarks.md has the numbers).
  const filterGradOptions = { ...options, intraOpNumThreads: 1 };
  const entries = new Map<string, Entry>();
  const loading: Promise<unknown>[] = [];
  const calls = { ort: 0, wasm: 0 };
  const replaced = new Map<Kind, KernelFunc>();

  const entryFor = (key: string, kind: Kind, g: Geometry): Entry => {
    let entry = entries.get(key);
    if (!entry) {
      entry = {};
      entries.set(key, entry);
      const target = entry;
      try {
        const bytes = graphFor(kind, g);
        const session = new native.binding.InferenceSession();
        const loaded = session.loadModel(bytes.buffer, bytes.byteOffset, bytes.byteLength, kind === 'Conv2DBackpropFilter' ? filterGradOptions : options);
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
  /** tfjs's [batch, rows, cols] as ONNX's [batch, cols, rows], copied off the heap. */
  const channelsFirst = (backend: WasmBackendLike, info: TensorInfo, batch: number, rows: number, cols: number): Float32Array => {
    const onHeap = scratch(backend, [batch, cols, rows]);
    transposeBatchOnHeap(backend, pointer(backend, info), batch, rows, cols, pointer(backend, onHeap));
    return copyOff(backend, onHeap);
  };

  /** x [N, H, W, C]'s first `rows` rows and `cols` columns of every image, as a new [N, rows, cols, C] on the heap. */
  const cutOnHeap = (backend: WasmBackendLike, x: TensorInfo, N: number, H: number, W: number, C: number, rows: number, cols: number): TensorInfo => {
    const out = scratch(backend, [N, rows, cols, C]);
    const [from, to] = [pointer(backend, x), pointer(backend, out)];
    const heap = backend.wasm.HEAPU8;
    const run = 4 * cols * C;
    for (let n = 0; n < N; n++) {
      for (let h = 0; h < rows; h++) {
        const src = from + 4 * (n * H + h) * W * C;
        heap.copyWithin(to + (n * rows + h) * run, src, src + run);
      }
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
    const tensor = (data: Float32Array, dims: number[]) => new OrtTensor('float32', data, dims);
    if (kind === 'Conv2D') {
      const feeds = { x: tensor(channelsFirst(backend, t.x!, N, H * W, C), [N, C, H, W]), filter: tensor(oihw(backend, t.filter!), [CO, C, KH, KW]) };
      const y = session.run(feeds, { y: null }, {}).y!.data;
      return backToHeap(backend, y, N, CO, OH * OW, [N, OH, OW, CO]);
    }
    if (kind === 'Conv2DBackpropFilter') {
      const { rows, cols } = filterGradRows(g);
      const x = rows.size < H || cols.size < W ? cutOnHeap(backend, t.x!, N, H, W, C, rows.size, cols.size) : t.x!;
      const feeds = {
        x: tensor(channelsFirst(backend, x, 1, N * rows.size * cols.size, C), [C, N, rows.size, cols.size]),
        dy: tensor(channelsFirst(backend, t.dy!, 1, N * OH * OW, CO), [CO, N, OH, OW]),
      };
      if (x !== t.x) backend.disposeData(x.dataId);
      const dw = session.run(feeds, { dw: null }, {}).dw!.data;
      return backToHeap(backend, dw, 1, C * CO, KH * KW, [KH, KW, C, CO]);
    }
    const feeds = { dy: tensor(channelsFirst(backend, t.dy!, N, OH * OW, CO), [N, CO, OH, OW]), filter: tensor(oihw(backend, t.filter!), [CO, C, KH, KW]) };
    const dx = session.run(feeds, { dx: null }, {}).dx!.data;
    return backToHeap(backend, dx, N, C, H * W, [N, H, W, C]);
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
        const entry = entryFor(key, kind, g);
        if (entry.session) {
          try {
            const out = runOnOrt(kind, entry.session, backend, g, ci.batchSize, args.inputs as { x?: TensorInfo; dy?: TensorInfo; filter?: TensorInfo });
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
