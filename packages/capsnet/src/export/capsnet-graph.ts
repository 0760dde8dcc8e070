/**
 * The CapsNet of model/capsnet.ts as ONNX graphs, op for op, with its routing unrolled (export/routing.ts) for a
 * fixed number of iterations (no Loop, no If). Reads top to bottom like `forward` in model/capsnet.ts. Every op is float32 except
 * the constant int64 shape/axes inputs of Reshape, Unsqueeze and ReduceSum, the one bool GreaterOrEqual that
 * feeds a Cast in the argmax mask, the Cast or DequantizeLinear that widens each stored weight to float32 in fp16
 * (compute fp32) and int8 exports, and, in fp16 exports with fp16 compute, the half-precision sections: conv1,
 * the PrimaryCaps Conv, the u_hat MatMul (eq. 2) and the decoder's dense layers take float16 inputs and the
 * float16 weights directly, between a ToHalf and a ToFloat Cast; the squash, the routing, the lengths, the mask and
 * the final sigmoid stay float32 (why: export/precision.ts).
 */
import { type CapsNetConfig, derivedSizes, paramShapes, IO_NAMES } from '@capsnet-onnx/core';
import { DataType, type GraphProto } from './onnx-schema.ts';
import { GraphBuilder } from './graph-builder.ts';
import type { ComputePrecision, Precision } from './precision.ts';
import { squash, unrolledRouting } from './routing.ts';

export type Weights = Record<string, Float32Array>;

/** The dynamic batch dimension's name in every graph input and output. */
export const BATCH_DIM = 'N';

/** tfjs conv kernels are HWIO [kh, kw, in, out]; ONNX Conv wants OIHW [out, in, kh, kw]. */
export function hwioToOihw(kernel: Float32Array, [kh, kw, cin, cout]: number[]): Float32Array {
  const out = new Float32Array(kernel.length);
  const khw = kh! * kw!;
  for (let y = 0; y < kh!; y++) {
    for (let x = 0; x < kw!; x++) {
      for (let i = 0; i < cin!; i++) {
        const src = ((y * kw! + x) * cin! + i) * cout!;
        const dst = i * khw + y * kw! + x;
        for (let o = 0; o < cout!; o++) out[o * cin! * khw + dst] = kernel[src + o]!;
      }
    }
  }
  return out;
}

/** hwioToOihw's inverse: an ONNX Conv kernel [cout, cin, kh, kw] back to TensorFlow's [kh, kw, cin, cout]. */
export function oihwToHwio(kernel: Float32Array, [kh, kw, cin, cout]: number[]): Float32Array {
  const out = new Float32Array(kernel.length);
  const khw = kh! * kw!;
  for (let o = 0; o < cout!; o++) {
    for (let i = 0; i < cin!; i++) {
      for (let y = 0; y < kh!; y++) {
        for (let x = 0; x < kw!; x++) out[((y * kw! + x) * cin! + i) * cout! + o] = kernel[(o * cin! + i) * khw + y * kw! + x]!;
      }
    }
  }
  return out;
}

/** Every weight the config implies must be present with the right number of values. */
export function checkWeights(config: CapsNetConfig, weights: Weights): void {
  for (const [name, shape] of Object.entries(paramShapes(config))) {
    const data = weights[name];
    const size = shape.reduce((a, b) => a * b, 1);
    if (!data) throw new Error(`weight ${name} is missing: the weights do not match the config`);
    if (data.length !== size) {
      throw new Error(`weight ${name} has ${data.length} values but the config implies [${shape}] (${size}): the weights do not match the config`);
    }
  }
}

/**
 * Decoder: masked capsules [N, classes, digitDim] -> dense ReLU ... -> dense sigmoid [N, H*W*C]. With fp16
 * compute the dense layers run in half precision and the final sigmoid in float32.
 */
export function decoder(
  g: GraphBuilder,
  config: CapsNetConfig,
  weights: Weights,
  precision: Precision,
  masked: string,
  output: string,
  weightPrefix = '',
  compute: ComputePrecision = 'fp32',
): string {
  const shapes = paramShapes(config);
  const half = compute === 'fp16';
  const layers = config.decoderHidden.length + 1;
  let h = g.scope('decoder', () => g.toHalf(g.reshape(masked, [-1, config.numClasses * config.digitDim]), half));
  for (let layer = 0; layer < layers; layer++) {
    h = g.scope(`decoder/dense${layer}`, () => {
      // [in, out]: one quantisation scale per output unit.
      const kernel = g.weight(
        `${weightPrefix}decoder/dense${layer}/kernel`,
        shapes[`decoder/dense${layer}/kernel`]!,
        weights[`decoder/dense${layer}/kernel`]!,
        precision,
        1,
        half,
      );
      const bias = g.initializer(
        `${weightPrefix}decoder/dense${layer}/bias`,
        shapes[`decoder/dense${layer}/bias`]!,
        weights[`decoder/dense${layer}/bias`]!,
        half,
      );
      const z = g.add(g.matMul(h, kernel), bias);
      return layer + 1 < layers ? g.relu(z) : g.sigmoid(g.toFloat(z, half), { output });
    });
  }
  return h;
}

/** Section 7's per-image standardisation, as model/capsnet.ts's standardizePerImage. Call inside a scope. */
function standardizePerImage(g: GraphBuilder, images: string, config: CapsNetConfig): string {
  const mean = g.reduceMean(images, [1, 2, 3], true);
  const centred = g.sub(images, mean);
  const std = g.sqrt(g.reduceMean(g.mul(centred, centred), [1, 2, 3], true));
  const floor = 1 / Math.sqrt(config.inputHeight * config.inputWidth * config.inputChannels);
  return g.div(centred, g.max(std, g.constFloat(floor)));
}

/** What the caller must do to an image before feeding it, for the input's doc string. */
function inputProtocolText(config: CapsNetConfig): string {
  const parts: string[] = [];
  if (config.crop)
    parts.push(
      ` Trained on random crops of ${config.crop.sourceHeight}x${config.crop.sourceWidth} images: feed ` +
        `their centre ${config.inputHeight}x${config.inputWidth} crop.`,
    );
  if (config.standardize === 'per-image') parts.push(' The graph standardises each image itself (per-image mean and standard deviation).');
  return parts.join('');
}

export function imageShapeText(config: CapsNetConfig): string {
  return `${config.inputHeight}x${config.inputWidth}x${config.inputChannels}`;
}

/**
 * Masks every capsule but the longest: lengths [N, J], capsules [N, J, D] -> masked capsules [N, J, D] (the
 * decoder's input at inference, paper section 4.1).
 *
 * One-hot of the longest capsule from float ops only (no ArgMax/OneHot/int64 Equal), so that no node leaves a GPU
 * provider. Every class whose length equals the row maximum gets isMax = 1; a MatMul with a strictly
 * upper-triangular ones matrix counts the maxima before each class, and only a maximum with none before it
 * survives. So ties give exactly one 1, at the first maximum, as tf.argMax does. (A NaN length gives an all-zero
 * mask.) Call inside a scope.
 */
export function maskLongestCapsule(g: GraphBuilder, lengths: string, capsules: string, J: number): string {
  const rowMax = g.reduceMax(lengths, [1], true);
  const isMax = g.cast(g.greaterOrEqual(lengths, rowMax), DataType.FLOAT);
  const before = Array.from({ length: J * J }, (_, k) => (Math.floor(k / J) < k % J ? 1 : 0));
  const maximaBefore = g.matMul(isMax, g.constFloat(before, [J, J], 'mask/strictly_upper_ones'));
  const oneHot = g.mul(isMax, g.relu(g.sub(g.constFloat(1), maximaBefore)), { name: 'OneHot' });
  return g.mul(capsules, g.unsqueeze(oneHot, [-1]), { name: 'MaskedCapsules' });
}

/** Where a network's pieces go in a graph: its weights' names, and whether its results are the graph's outputs. */
export interface BodyNaming {
  /** Prefix of its initializers' names ('' for a single model; 'member1/' ... in an ensemble). */
  weightPrefix: string;
  /** Name its capsules, coupling and lengths as the graph outputs (a single model), or leave them internal. */
  io: boolean;
}

export interface BodyOutputs {
  lengths: string;
  capsules: string;
  coupling: string;
}

/**
 * One CapsNet from images to class scores inside `g`: conv1, primary capsules, digit capsules with routing
 * unrolled, capsule lengths. images: [N, H, W, C] in [0, 1].
 */
export function capsNetBody(
  g: GraphBuilder,
  config: CapsNetConfig,
  weights: Weights,
  images: string,
  naming: BodyNaming,
  precision: Precision = 'fp32',
  compute: ComputePrecision = 'fp32',
): BodyOutputs {
  checkWeights(config, weights);
  // fp16 compute: conv1, PrimaryCaps' Conv and the u_hat MatMul run in half precision (export/precision.ts).
  const half = compute === 'fp16';
  const { numPrimaryCaps: I, routedCaps: R } = derivedSizes(config);
  const { numClasses: J, digitDim: D, primaryDim, squashEpsilon: eps } = config;
  const shapes = paramShapes(config);
  const name = (weight: string) => `${naming.weightPrefix}${weight}`;
  const io = (output: string) => (naming.io ? output : undefined);
  const input = config.standardize === 'per-image' ? g.scope('standardize', () => standardizePerImage(g, images, config)) : images;

  // Conv1: valid, stride 1, bias, ReLU. The graph works in NCHW for Conv; the kernels were transposed once, here.
  const conv1 = g.scope('conv1', () => {
    // OIHW: one quantisation scale per output channel.
    const kernel = g.weight(
      name('conv1/kernel'),
      [config.conv1Filters, config.inputChannels, config.conv1Kernel, config.conv1Kernel],
      hwioToOihw(weights['conv1/kernel']!, shapes['conv1/kernel']!),
      precision,
      0,
      half,
    );
    const bias = g.initializer(name('conv1/bias'), shapes['conv1/bias']!, weights['conv1/bias']!, half);
    const nchw = g.toHalf(g.transpose(input, [0, 3, 1, 2]), half);
    const k = config.conv1Kernel;
    return g.relu(g.conv(nchw, kernel, bias, { kernel_shape: [k, k], strides: [1, 1] }));
  });

  // PrimaryCaps: valid conv with stride primaryStride, bias, no ReLU; back to NHWC so that channel
  // c = map * primaryDim + d and capsule i = (y * w + x) * maps + map, exactly as tfjs reshapes; then squash.
  const u = g.scope('primary', () => {
    const channels = config.primaryMaps * primaryDim;
    const kernel = g.weight(
      name('primary/kernel'),
      [channels, config.conv1Filters, config.primaryKernel, config.primaryKernel],
      hwioToOihw(weights['primary/kernel']!, shapes['primary/kernel']!),
      precision,
      0,
      half,
    );
    const bias = g.initializer(name('primary/bias'), shapes['primary/bias']!, weights['primary/bias']!, half);
    const k = config.primaryKernel;
    const conv = g.toFloat(g.conv(conv1, kernel, bias, { kernel_shape: [k, k], strides: [config.primaryStride, config.primaryStride] }), half);
    let capsules = g.reshape(g.transpose(conv, [0, 2, 3, 1]), [-1, I, primaryDim]);
    // config.primaryScale: the authors' code's factor before squash (absent or 1 in the paper's network).
    if (config.primaryScale !== undefined && config.primaryScale !== 1) capsules = g.mul(capsules, g.constFloat(config.primaryScale));
    return squash(g, capsules, eps);
  });

  // u_hat_j|i = W_ij u_i (eq. 2): one batched MatMul over i, [I, N, 8] x [I, 8, J*D], with W stored once.
  const uHat = g.scope('digit', () => {
    // [I, 8, R*D]: one quantisation scale per primary capsule i.
    const W = g.weight(name('digit/W'), shapes['digit/W']!, weights['digit/W']!, precision, 0, half);
    const byCapsule = g.toFloat(g.matMul(g.transpose(g.toHalf(u, half), [1, 0, 2]), W), half);
    return g.reshape(g.transpose(byCapsule, [1, 0, 2]), [-1, I, R, D]);
  });

  // The authors' code's DigitCaps bias [R, D] before squash (config.digitCapsBias); absent in the paper's network.
  const digitBias =
    weights['digit/bias'] && shapes['digit/bias']
      ? g.scope('digit', () => g.initializer(name('digit/bias'), shapes['digit/bias']!, weights['digit/bias']!))
      : undefined;
  // Routing, unrolled (export/routing.ts). With "none-of-the-above" (R = J + 1) its capsule is routed like the
  // others and dropped after the last iteration.
  const routed = unrolledRouting(g, config.routing, {
    u,
    uHat,
    routedCaps: R,
    epsilon: eps,
    bias: digitBias,
    couplingOutput: io(IO_NAMES.coupling),
    capsulesOutput: R === J ? io(IO_NAMES.capsules) : undefined,
  });

  const capsules = R === J ? routed.capsules : g.scope('none_of_the_above', () => g.slice(routed.capsules, [0], [J], [1], { output: io(IO_NAMES.capsules) }));

  // Class scores: |v_j| with the same epsilon under the root as squash.
  const lengths = g.scope('lengths', () =>
    g.sqrt(g.add(g.reduceSum(g.mul(capsules, capsules), [-1], false), g.constFloat(eps)), { output: io(IO_NAMES.lengths) }),
  );
  return { lengths, capsules, coupling: routed.coupling };
}

/** The graph's image input, documented with the shape and the protocol the model was trained with. */
export function imagesInput(g: GraphBuilder, config: CapsNetConfig): string {
  const N = BATCH_DIM;
  return g.input(
    IO_NAMES.images,
    [N, config.inputHeight, config.inputWidth, config.inputChannels],
    `float32 [${N}, H=${config.inputHeight}, W=${config.inputWidth}, C=${config.inputChannels}]: row-major NHWC pixels in [0, 1] ` +
      `(the layout train/ uses); ${N} is the dynamic batch size.${inputProtocolText(config)}`,
  );
}

/** The four graph outputs' shapes and documentation. */
export function declareOutputs(g: GraphBuilder, config: CapsNetConfig, lengthsDoc: string): void {
  const { numPrimaryCaps: I, routedCaps: R, pixels } = derivedSizes(config);
  const { numClasses: J, digitDim: D } = config;
  const N = BATCH_DIM;
  g.output(IO_NAMES.lengths, [N, J], `float32 [${N}, ${J}]: ${lengthsDoc}`);
  g.output(IO_NAMES.capsules, [N, J, D], `float32 [${N}, ${J}, ${D}]: the digit capsules v_j after the last routing iteration.`);
  g.output(
    IO_NAMES.reconstruction,
    [N, pixels],
    `float32 [${N}, ${pixels}]: decoder output, NHWC pixels in [0, 1], with the capsules masked to the longest one (first one on ties).`,
  );
  g.output(
    IO_NAMES.coupling,
    [N, I, R],
    `float32 [${N}, ${I}, ${R}]: coupling coefficients c_ij of the last routing iteration (softmax over classes` +
      `${R === J ? '' : ', the last column being "none-of-the-above"'}).`,
  );
}

/** The full model: images -> lengths, capsules, reconstruction (masked by the longest capsule), coupling. */
export function buildCapsNetGraph(config: CapsNetConfig, weights: Weights, precision: Precision = 'fp32', compute: ComputePrecision = 'fp32'): GraphProto {
  checkWeights(config, weights);
  const g = new GraphBuilder(
    'capsnet',
    `CapsNet (Sabour, Frosst & Hinton 2017) for ${imageShapeText(config)} images and ${config.numClasses} classes: conv1, primary capsules, ` +
      `digit capsules with ${config.routing.iterations} routing-by-agreement iteration(s) unrolled, and the reconstruction decoder ` +
      `masked by the longest capsule. The routing runs per example, so the batch dimension ${BATCH_DIM} is free.`,
  );
  const images = imagesInput(g, config);
  const { lengths, capsules } = capsNetBody(g, config, weights, images, { weightPrefix: '', io: true }, precision, compute);
  const masked = g.scope('mask', () => maskLongestCapsule(g, lengths, capsules, config.numClasses));
  decoder(g, config, weights, precision, masked, IO_NAMES.reconstruction, '', compute);
  declareOutputs(g, config, 'digit capsule lengths |v_j|, the class scores (argmax = prediction).');
  return g.graph();
}

/** The decoder on its own: masked capsules [N, classes, digitDim] -> reconstruction [N, H*W*C]. */
export function buildDecoderGraph(config: CapsNetConfig, weights: Weights, precision: Precision = 'fp32', compute: ComputePrecision = 'fp32'): GraphProto {
  checkWeights(config, weights);
  const { pixels } = derivedSizes(config);
  const { numClasses: J, digitDim: D } = config;
  const N = BATCH_DIM;
  const g = new GraphBuilder(
    'capsnet_decoder',
    `CapsNet reconstruction decoder for ${imageShapeText(config)} images: masked digit capsules -> ` +
      `${[...config.decoderHidden, pixels].join(' -> ')} (ReLU, ..., sigmoid).`,
  );
  const masked = g.input(
    IO_NAMES.maskedCapsules,
    [N, J, D],
    `float32 [${N}, ${J}, ${D}]: digit capsules with every capsule but one (usually the longest) set to zero.`,
  );
  decoder(g, config, weights, precision, masked, IO_NAMES.reconstruction, '', compute);
  g.output(IO_NAMES.reconstruction, [N, pixels], `float32 [${N}, ${pixels}]: reconstructed NHWC pixels in [0, 1].`);
  return g.graph();
}
