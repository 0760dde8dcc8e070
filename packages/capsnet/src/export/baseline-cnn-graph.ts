/**
 * The baseline CNNs of model/baseline-cnn.ts as an ONNX graph, op for op with `baselineForward` at test
 * time (no dropout): images [N, H, W, C] NHWC in [0, 1] -> logits [N, classes] and probabilities [N, classes]
 * (softmax for the Table 1 CNN, sigmoid for the MultiMNIST one). Convolutions run in NCHW; the features go back to
 * NHWC before flattening, so fc1's rows keep tfjs's order.
 */
import { type BaselineCnnConfig, baselineParamShapes, featureSize, validateBaselineConfig } from '@capsnet-onnx/core';
import type { GraphProto } from './onnx-schema.ts';
import { GraphBuilder } from './graph-builder.ts';
import { BATCH_DIM, type Weights, hwioToOihw } from './capsnet-graph.ts';

export const BASELINE_IO_NAMES = { images: 'images', logits: 'logits', probabilities: 'probabilities' } as const;

/** Metadata keys that mark a baseline CNN file (the others are runtime/contract.ts's METADATA_KEYS). */
export const BASELINE_METADATA_KEYS = { model: 'capsnet.model', config: 'capsnet.baseline_config' } as const;

export function buildBaselineCnnGraph(config: BaselineCnnConfig, weights: Weights): GraphProto {
  validateBaselineConfig(config);
  const shapes = baselineParamShapes(config);
  for (const [name, shape] of Object.entries(shapes)) {
    const size = shape.reduce((a, b) => a * b, 1);
    if (!weights[name]) throw new Error(`weight ${name} is missing: the weights do not match the baseline config`);
    if (weights[name]!.length !== size) throw new Error(`weight ${name} has ${weights[name]!.length} values but the config implies [${shape}] (${size})`);
  }
  const N = BATCH_DIM;
  const J = config.numClasses;
  const g = new GraphBuilder(
    'baseline_cnn',
    `Baseline CNN (Sabour, Frosst & Hinton 2017, ${config.output === 'softmax' ? 'Table 1' : 'MultiMNIST'}): ${config.convChannels.length} ` +
      `${config.kernel}x${config.kernel} ${config.padding} convolutions ` +
      `(${config.convChannels.join('/')}), fully connected ${config.fc.join('/')}, ${config.output} ` +
      'output.',
  );
  const images = g.input(
    BASELINE_IO_NAMES.images,
    [N, config.inputHeight, config.inputWidth, config.inputChannels],
    `float32 [${N}, H=${config.inputHeight}, W=${config.inputWidth}, C=${config.inputChannels}]: ` +
      `row-major NHWC pixels in [0, 1]; ${N} is the dynamic batch size.`,
  );
  let h = g.transpose(images, [0, 3, 1, 2]);
  let height = config.inputHeight;
  let width = config.inputWidth;
  config.convChannels.forEach((outC, layer) => {
    const name = `conv${layer + 1}`;
    h = g.scope(name, () => {
      const shape = shapes[`${name}/kernel`]!;
      const kernel = g.initializer(`${name}/kernel`, [outC, shape[2]!, config.kernel, config.kernel], hwioToOihw(weights[`${name}/kernel`]!, shape));
      const bias = g.initializer(`${name}/bias`, [outC], weights[`${name}/bias`]!);
      // tfjs 'same' with stride 1: (k - 1) / 2 before, the rest after.
      const before = Math.floor((config.kernel - 1) / 2);
      const after = config.kernel - 1 - before;
      const pads = config.padding === 'same' ? [before, before, after, after] : [0, 0, 0, 0];
      if (config.padding === 'valid') {
        height -= config.kernel - 1;
        width -= config.kernel - 1;
      }
      let y = g.relu(g.node('Conv', [h, kernel, bias], { kernel_shape: [config.kernel, config.kernel], strides: [1, 1], pads })[0]!);
      if (config.poolAfter.includes(layer)) {
        // tfjs maxPool 2x2 stride 2 'same': an odd size gets one padded row/column at the end.
        const padH = Math.max(0, 2 * Math.ceil(height / 2) - height);
        const padW = Math.max(0, 2 * Math.ceil(width / 2) - width);
        y = g.node('MaxPool', [y], { kernel_shape: [2, 2], strides: [2, 2], pads: [0, 0, padH, padW] })[0]!;
        height = Math.ceil(height / 2);
        width = Math.ceil(width / 2);
      }
      return y;
    });
  });
  const { height: fh, width: fw } = featureSize(config);
  let f = g.scope('flatten', () => g.reshape(g.transpose(h, [0, 2, 3, 1]), [-1, fh * fw * config.convChannels.at(-1)!]));
  const dense = (name: string, x: string, relu: boolean, output?: string) =>
    g.scope(name, () => {
      const kernel = g.initializer(`${name}/kernel`, shapes[`${name}/kernel`]!, weights[`${name}/kernel`]!);
      const bias = g.initializer(`${name}/bias`, shapes[`${name}/bias`]!, weights[`${name}/bias`]!);
      const z = g.add(g.matMul(x, kernel), bias, relu ? undefined : { output });
      return relu ? g.relu(z) : z;
    });
  config.fc.forEach((_, layer) => {
    f = dense(`fc${layer + 1}`, f, true);
  });
  const logits = dense('out', f, false, BASELINE_IO_NAMES.logits);
  if (config.output === 'softmax') g.softmax(logits, -1, { output: BASELINE_IO_NAMES.probabilities });
  else g.sigmoid(logits, { output: BASELINE_IO_NAMES.probabilities });
  g.output(BASELINE_IO_NAMES.logits, [N, J], `float32 [${N}, ${J}]: class logits (argmax = prediction).`);
  g.output(BASELINE_IO_NAMES.probabilities, [N, J], `float32 [${N}, ${J}]: ${config.output} of the logits.`);
  return g.graph();
}
