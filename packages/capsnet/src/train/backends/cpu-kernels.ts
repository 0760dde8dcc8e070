/**
 * A cache-friendly Conv2DBackpropFilter for backends whose own kernel is slow or missing.
 *
 * tfjs-backend-cpu computes the filter gradient with one TensorBuffer.get() call per multiply-add, which makes a
 * CapsNet training step take tens of seconds on two cores; the wasm backend has no such kernel at all. This one
 * reads the raw NHWC arrays and accumulates dW[kh, kw, ci, :] += x[n, y*s+kh, x*s+kw, ci] * dy[n, y, x, :], with
 * the innermost loop running over contiguous output channels.
 *
 * train/backends/backend.ts installs it when it starts the cpu backend, so training, the experiments and the tests all get
 * it (the wasm backend has its own kernels in train/backends/wasm-kernels.ts).
 */
import * as tf from '@tensorflow/tfjs-core';

type Conv2DBackpropFilterAttrs = {
  strides: [number, number] | number;
  pad: 'valid' | 'same' | number | tf.backend_util.ExplicitPadding;
  dataFormat: 'NHWC' | 'NCHW';
  dimRoundingMode?: 'floor' | 'round' | 'ceil';
  filterShape: [number, number, number, number];
};

interface SyncReadable {
  readSync(dataId: object): unknown;
  /** cpu (and webgl) backends. */
  makeTensorInfo?(shape: number[], dtype: tf.DataType, values?: Float32Array): tf.TensorInfo;
  /** The wasm backend's equivalent. */
  makeOutput?(shape: number[], dtype: tf.DataType, memoryOffset?: number, values?: Float32Array): tf.TensorInfo;
}

/** dW for an NHWC convolution (no dilation), in plain typed-array loops. Exported for tests. */
export function conv2dFilterGradient(
  x: Float32Array,
  xShape: readonly number[],
  dy: Float32Array,
  dyShape: readonly number[],
  filterShape: readonly number[],
  strideH: number,
  strideW: number,
  padTop: number,
  padLeft: number,
): Float32Array {
  const [batch, inH, inW, inC] = xShape as [number, number, number, number];
  const [, outH, outW, outC] = dyShape as [number, number, number, number];
  const [kH, kW] = filterShape as [number, number, number, number];
  const dW = new Float32Array(kH * kW * inC * outC);
  for (let n = 0; n < batch; n++) {
    for (let oy = 0; oy < outH; oy++) {
      for (let ox = 0; ox < outW; ox++) {
        const dyBase = ((n * outH + oy) * outW + ox) * outC;
        for (let ky = 0; ky < kH; ky++) {
          const iy = oy * strideH + ky - padTop;
          if (iy < 0 || iy >= inH) continue;
          for (let kx = 0; kx < kW; kx++) {
            const ix = ox * strideW + kx - padLeft;
            if (ix < 0 || ix >= inW) continue;
            const xBase = ((n * inH + iy) * inW + ix) * inC;
            const wBase = (ky * kW + kx) * inC * outC;
            for (let ci = 0; ci < inC; ci++) {
              const xv = x[xBase + ci]!;
              if (xv === 0) continue; // post-ReLU activations are often zero
              const row = wBase + ci * outC;
              for (let co = 0; co < outC; co++) dW[row + co]! += xv * dy[dyBase + co]!;
            }
          }
        }
      }
    }
  }
  return dW;
}

function kernelFunc({ inputs, backend, attrs }: { inputs: tf.NamedTensorInfoMap; backend: unknown; attrs?: tf.NamedAttrMap }): tf.TensorInfo {
  const { x, dy } = inputs as { x: tf.TensorInfo; dy: tf.TensorInfo };
  const { strides, pad, dataFormat, dimRoundingMode, filterShape } = attrs as unknown as Conv2DBackpropFilterAttrs;
  if (dataFormat === 'NCHW') throw new Error('fast Conv2DBackpropFilter supports NHWC only');
  const info = tf.backend_util.computeConv2DInfo(
    x.shape as [number, number, number, number],
    filterShape,
    strides,
    1,
    pad,
    dimRoundingMode,
    false,
    'channelsLast',
  );
  const b = backend as SyncReadable;
  const xs = Float32Array.from(b.readSync(x.dataId) as ArrayLike<number>);
  const dys = Float32Array.from(b.readSync(dy.dataId) as ArrayLike<number>);
  const dW = conv2dFilterGradient(xs, x.shape, dys, dy.shape, info.filterShape, info.strideHeight, info.strideWidth, info.padInfo.top, info.padInfo.left);
  if (b.makeTensorInfo) return b.makeTensorInfo(info.filterShape, 'float32', dW);
  if (b.makeOutput) return b.makeOutput(info.filterShape, 'float32', undefined, dW);
  throw new Error('fast Conv2DBackpropFilter: this backend cannot take a computed tensor');
}

/**
 * Use the fast kernel on `backendName`: always on 'cpu' (its own is pathologically slow), elsewhere only when the
 * backend has no Conv2DBackpropFilter. Returns whether it installed it.
 */
export function installFastConvFilterGrad(backendName: string): boolean {
  const existing = tf.getKernel('Conv2DBackpropFilter', backendName);
  if (existing && backendName !== 'cpu') return false;
  if (existing?.kernelFunc === kernelFunc) return true;
  if (existing) tf.unregisterKernel('Conv2DBackpropFilter', backendName);
  tf.registerKernel({ kernelName: 'Conv2DBackpropFilter', backendName, kernelFunc: kernelFunc as unknown as tf.KernelFunc });
  return true;
}
