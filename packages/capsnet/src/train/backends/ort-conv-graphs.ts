// The ONNX graphs behind train/backends/ort-conv.ts, and the im2col that feeds one of them: pure functions of a
// convolution's geometry (no session, no wasm heap).

import type { backend_util } from '@tensorflow/tfjs-core';
import { GraphBuilder, buildModel } from '../../export/graph-builder.ts';
import { encodeModel } from '../../export/onnx-schema.ts';

export type Kind = 'Conv2D' | 'Conv2DBackpropFilter' | 'Conv2DBackpropInput';
export const KINDS: Kind[] = ['Conv2D', 'Conv2DBackpropFilter', 'Conv2DBackpropInput'];

/** A convolution's geometry: tfjs's Conv2DInfo reduced to what the graphs need (N is symbolic in them). */
export interface Geometry {
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

export function geometry(ci: backend_util.Conv2DInfo): Geometry {
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
export function filterGradRows(g: Geometry): { rows: { size: number; pad: number }; cols: { size: number; pad: number } } {
  const needH = (g.OH - 1) * g.sh + g.KH - g.pt;
  const needW = (g.OW - 1) * g.sw + g.KW - g.pl;
  return {
    rows: { size: Math.min(g.H, needH), pad: Math.max(0, needH - g.H) },
    cols: { size: Math.min(g.W, needW), pad: Math.max(0, needW - g.W) },
  };
}

/** The ONNX graph for one kernel at one geometry, in ONNX's layouts (the batch 'N' symbolic). */
export function graphFor(kind: Kind, g: Geometry): Uint8Array {
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

/** The im2col GEMM: Y[P, CO] = Xcol[P, KK] W[KK, CO], P output positions, KK = KH*KW*C (every dimension symbolic). */
export function im2colGraph(): Uint8Array {
  const b = new GraphBuilder('capsnet-im2col-forward');
  const xcol = b.input('xcol', ['P', 'KK'], 'im2col rows, patch order (kh, kw, c)');
  const filter = b.input('filter', ['KK', 'CO'], 'the HWIO filter as [KH*KW*C, CO]');
  const [y] = b.node('Gemm', [xcol, filter], {}, { output: 'y' });
  b.output(y!, ['P', 'CO'], 'NHWC rows');
  return encodeModel(buildModel(b.graph(), { producerName: 'capsnet-onnx training kernels', producerVersion: '1' }));
}

/**
 * The input gradient's GEMM: col[P, KK] = dy[P, CO] W[KK, CO]^T, P output positions, KK = KH*KW*C (every dimension
 * symbolic); a col2im then adds col's rows into dx (assembly/training-kernels.ts's col2imRows).
 */
export function col2imGraph(): Uint8Array {
  const b = new GraphBuilder('capsnet-col2im-input-gradient');
  const dy = b.input('dy', ['P', 'CO'], 'dy as NHWC rows');
  const filter = b.input('filter', ['KK', 'CO'], 'the HWIO filter as [KH*KW*C, CO]');
  const [col] = b.node('Gemm', [dy, filter], { transB: 1 }, { output: 'col' });
  b.output(col!, ['P', 'KK'], 'one row per output position, patch order (kh, kw, c)');
  return encodeModel(buildModel(b.graph(), { producerName: 'capsnet-onnx training kernels', producerVersion: '1' }));
}

/**
 * Whether a convolution's forward and input gradient run as GEMMs on tfjs's own layouts instead of ONNX Conv and
 * ConvTranspose: where a patch row (KW*C floats) is long, so that im2col and col2im are a few long runs. ORT's Conv
 * multiplies image by image (a [CO, KK] x [KK, OH*OW] GEMM each, streaming the whole filter per image); one GEMM over
 * a chunk's rows took PrimaryCaps' forward from 75-113 to 51-88 ms at batch 32. ORT's ConvTranspose likewise runs a
 * GEMM per image, then a scalar col2im on one thread: 257 ms at batch 32 on a Zen 3, against 154 ms for the GEMMs
 * over chunks of 8 images and the threaded col2im (docs/benchmarks.md). The filter gradient keeps its Conv graph:
 * the same GEMM form (dW^T = dY^T Xcol, summed over chunks) ran anywhere from 0.8x to 1.9x the Conv graph's time
 * from step to step.
 */
export function im2colPays(g: { KW: number; C: number }): boolean {
  return g.KW * g.C >= IM2COL_MIN_RUN;
}
const IM2COL_MIN_RUN = 256;
/**
 * Rows (output positions) per GEMM, forward and input gradient: 8 PrimaryCaps images; keeps the im2col and col buffers
 * at 24 MB for any batch size (the input gradient at 144 or 288 rows took the same time, at 72 or 576 rows 1.4x longer).
 */
export const ROWS_PER_CHUNK = 288;
/** The most one ORT convolution call writes (see ort-conv.ts's byChunks): 20 images of conv1's output. */
export const OUTPUT_BYTES_PER_CALL = 8 * 2 ** 20;

/**
 * Images n0..n0+count of x [N, H, W, C] as im2col rows [count*OH*OW, KH*KW*C] (patch order kh, kw, c: the HWIO
 * filter's row order), zeros where a patch reaches into the padding.
 */
export function toColumns(x: Float32Array, g: Geometry, n0: number, count: number, col: Float32Array): void {
  const { H, W, C, KH, KW, OH, OW, sh, sw, pt, pl } = g;
  const run = KW * C;
  let row = 0;
  for (let n = n0; n < n0 + count; n++) {
    for (let oh = 0; oh < OH; oh++) {
      for (let ow = 0; ow < OW; ow++, row += KH * run) {
        const iw = ow * sw - pl;
        const kwLo = Math.max(0, -iw);
        const kwHi = Math.min(KW, W - iw);
        for (let kh = 0; kh < KH; kh++) {
          const ih = oh * sh - pt + kh;
          const at = row + kh * run;
          if (ih < 0 || ih >= H || kwHi <= kwLo) {
            col.fill(0, at, at + run);
            continue;
          }
          const src = ((n * H + ih) * W + iw) * C;
          col.set(x.subarray(src + kwLo * C, src + kwHi * C), at + kwLo * C);
          if (kwLo > 0) col.fill(0, at, at + kwLo * C);
          if (kwHi < KW) col.fill(0, at + kwHi * C, at + run);
        }
      }
    }
  }
}
