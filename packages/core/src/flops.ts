// FLOP counts of the CapsNet from its config, for throughput figures (GFLOP/s) in the benchmarks.
//
// Counted: the multiply-adds (2 FLOPs each) of the convolutions, the u_hat transform, the routing sums and the
// decoder's dense layers. Left out: element-wise work (biases, ReLU, squash, softmax, losses, Adam), which is
// memory-bound and well under 1% of the total at the paper's sizes.
//
// Backward pass: every product y = f(x, W) costs one product of the same size for dL/dW and one for dL/dx,
// except that conv1 needs no dL/d(image). So a training step is about 3x the forward pass.

import { type CapsNetConfig, derivedSizes } from './config.ts';
import { routingFlops } from './routing.ts';

export interface LayerFlops {
  conv1: number;
  primaryCaps: number;
  uHat: number;
  routing: number;
  decoder: number;
}

export interface FlopCounts {
  /** Per image, forward pass (training mode: decoder masked by the label, so the same cost). */
  forward: LayerFlops & { total: number };
  /** Per image, backward pass (gradients of the loss w.r.t. every weight). */
  backward: LayerFlops & { total: number };
  /** Per image, forward + backward. */
  trainStep: number;
}

function total(l: LayerFlops): number {
  return l.conv1 + l.primaryCaps + l.uHat + l.routing + l.decoder;
}

export function countFlops(config: CapsNetConfig): FlopCounts {
  const { conv1H, conv1W, primaryH, primaryW, numPrimaryCaps, pixels } = derivedSizes(config);
  const primaryChannels = config.primaryMaps * config.primaryDim;
  const digitWidth = config.numClasses * config.digitDim;

  const conv1 = 2 * config.conv1Kernel ** 2 * config.inputChannels * config.conv1Filters * conv1H * conv1W;
  const primaryCaps = 2 * config.primaryKernel ** 2 * config.conv1Filters * primaryChannels * primaryH * primaryW;
  // u_hat_j|i = W_ij u_i: for every input capsule i an [primaryDim] x [primaryDim, classes * digitDim] product.
  const uHat = 2 * numPrimaryCaps * config.primaryDim * digitWidth;
  const routing = routingFlops(config.routing, numPrimaryCaps, digitWidth);
  const widths = [digitWidth, ...config.decoderHidden, pixels];
  let decoder = 0;
  for (let i = 0; i + 1 < widths.length; i++) decoder += 2 * widths[i]! * widths[i + 1]!;

  const forward = { conv1, primaryCaps, uHat, routing, decoder };
  const backward = {
    conv1, // filter gradient only
    primaryCaps: 2 * primaryCaps,
    uHat: 2 * uHat,
    routing: 2 * routing,
    decoder: 2 * decoder,
  };
  const f = { ...forward, total: total(forward) };
  const b = { ...backward, total: total(backward) };
  return { forward: f, backward: b, trainStep: f.total + b.total };
}

/** FLOPs of the three convolution kernels of one conv layer at a batch size: forward, dL/dW, dL/dx. */
export function convKernelFlops(
  batch: number,
  inH: number,
  inW: number,
  inC: number,
  kernel: number,
  outC: number,
  stride: number,
): { forward: number; filterGrad: number; inputGrad: number } {
  const outH = Math.floor((inH - kernel) / stride) + 1,
    outW = Math.floor((inW - kernel) / stride) + 1;
  const f = 2 * batch * outH * outW * kernel * kernel * inC * outC;
  return { forward: f, filterGrad: f, inputGrad: f };
}
