/**
 * The paper's baseline CNNs: config, presets, weight shapes and parameter counts (no TensorFlow.js; the network
 * itself is in packages/capsnet/src/model/baseline-cnn.ts, the ONNX graph in export/baseline-cnn-graph.ts).
 *
 * Table 1 (MNIST), section 5: three 5x5 stride-1 convolutions with 256, 256 and 128 channels, fully connected 328
 * and 192, the last connected with dropout to a softmax over the classes, cross entropy. The paper gives 35.4M
 * parameters: that count comes out with 'same' convolutions and no pooling (35,445,522 on 28x28); with two 2x2
 * poolings it would be 4.6M. ReLU after every hidden layer and dropout 0.5 are our reading (the paper is silent).
 *
 * MultiMNIST (section 6, 8.1% error, 24.56M parameters in the paper): the authors' released ConvModel: 5x5 'same'
 * convolutions of 512 and 256 channels each followed by 2x2 max pooling, fully connected 1024, a linear output, and
 * sigmoid cross entropy on the two-hot label set; 24,535,306 parameters on 36x36 by our count.
 *
 * Layout: images NHWC in [0, 1]; weights named conv{k}/kernel [5, 5, in, out] (HWIO), conv{k}/bias, fc{k}/kernel
 * [in, out], fc{k}/bias, out/kernel, out/bias.
 */
import type { DataShape } from './config.ts';

export interface BaselineCnnConfig extends DataShape {
  /** Output channels of each convolution (stride 1, ReLU). */
  convChannels: number[];
  /** Square kernel size of every convolution. */
  kernel: number;
  padding: 'same' | 'valid';
  /** Max-pool 2x2 (stride 2, 'same') after these convolutions (0-based). */
  poolAfter: number[];
  /** Widths of the fully connected ReLU layers. */
  fc: number[];
  /** Dropout rate on the last fully connected layer's output while training (0: none). */
  dropout: number;
  /** 'softmax': softmax cross entropy on one label per image; 'sigmoid': sigmoid cross entropy on a label set (MultiMNIST). */
  output: 'softmax' | 'sigmoid';
}

export type BaselineName = 'mnist' | 'multimnist';

/** The paper's sizes; the data shape comes from the data. */
export const PAPER_BASELINES: Record<BaselineName, Omit<BaselineCnnConfig, keyof DataShape>> = {
  mnist: { convChannels: [256, 256, 128], kernel: 5, padding: 'same', poolAfter: [], fc: [328, 192], dropout: 0.5, output: 'softmax' },
  multimnist: { convChannels: [512, 256], kernel: 5, padding: 'same', poolAfter: [0, 1], fc: [1024], dropout: 0, output: 'sigmoid' },
};

/** The parameter counts the paper quotes for its baselines (Table 1's at 28x28, MultiMNIST's at 36x36). */
export const PAPER_BASELINE_PARAMETERS: Record<BaselineName, { count: number; quoted: string; shape: DataShape }> = {
  mnist: { count: 35.4e6, quoted: '35.4M', shape: { inputHeight: 28, inputWidth: 28, inputChannels: 1, numClasses: 10 } },
  multimnist: { count: 24.56e6, quoted: '24.56M', shape: { inputHeight: 36, inputWidth: 36, inputChannels: 1, numClasses: 10 } },
};

/** A narrower version for CPU runs: every width divided by `factor` (at least 4). */
export function narrowed(base: Omit<BaselineCnnConfig, keyof DataShape>, factor: number): Omit<BaselineCnnConfig, keyof DataShape> {
  const cut = (w: number) => Math.max(4, Math.round(w / factor));
  return { ...base, convChannels: base.convChannels.map(cut), fc: base.fc.map(cut) };
}

export function baselineConfig(name: BaselineName, shape: DataShape, overrides: Partial<BaselineCnnConfig> = {}): BaselineCnnConfig {
  const config = { ...PAPER_BASELINES[name], ...shape, ...overrides };
  validateBaselineConfig(config);
  return config;
}

export function validateBaselineConfig(config: BaselineCnnConfig): void {
  const ints = (label: string, values: number[]) => {
    if (!Array.isArray(values) || !values.every((v) => Number.isInteger(v) && v > 0)) {
      throw new Error(`baseline config.${label} must be positive integers, got ${JSON.stringify(values)}`);
    }
  };
  ints('convChannels', config.convChannels);
  ints('fc', config.fc);
  ints('kernel', [config.kernel]);
  ints('input shape', [config.inputHeight, config.inputWidth, config.inputChannels, config.numClasses]);
  if (config.convChannels.length === 0) throw new Error('baseline config.convChannels needs at least one convolution');
  if (!['same', 'valid'].includes(config.padding)) throw new Error(`baseline config.padding must be "same" or "valid", got ${JSON.stringify(config.padding)}`);
  if (!['softmax', 'sigmoid'].includes(config.output))
    throw new Error(`baseline config.output must be "softmax" or "sigmoid", got ${JSON.stringify(config.output)}`);
  if (!(config.dropout >= 0 && config.dropout < 1)) throw new Error(`baseline config.dropout must be in [0, 1), got ${config.dropout}`);
  const { height, width } = featureSize(config);
  if (height < 1 || width < 1) throw new Error(`input ${config.inputHeight}x${config.inputWidth} is too small for the baseline's convolutions`);
}

/** Spatial size after the convolutions and poolings. */
export function featureSize(config: BaselineCnnConfig): { height: number; width: number } {
  let height = config.inputHeight;
  let width = config.inputWidth;
  config.convChannels.forEach((_, layer) => {
    if (config.padding === 'valid') {
      height -= config.kernel - 1;
      width -= config.kernel - 1;
    }
    if (config.poolAfter.includes(layer)) {
      height = Math.ceil(height / 2);
      width = Math.ceil(width / 2);
    }
  });
  return { height, width };
}

export function baselineParamShapes(config: BaselineCnnConfig): Record<string, number[]> {
  const shapes: Record<string, number[]> = {};
  let inC = config.inputChannels;
  config.convChannels.forEach((outC, layer) => {
    shapes[`conv${layer + 1}/kernel`] = [config.kernel, config.kernel, inC, outC];
    shapes[`conv${layer + 1}/bias`] = [outC];
    inC = outC;
  });
  const { height, width } = featureSize(config);
  let inF = height * width * inC;
  config.fc.forEach((outF, layer) => {
    shapes[`fc${layer + 1}/kernel`] = [inF, outF];
    shapes[`fc${layer + 1}/bias`] = [outF];
    inF = outF;
  });
  shapes['out/kernel'] = [inF, config.numClasses];
  shapes['out/bias'] = [config.numClasses];
  return shapes;
}

export function countShapes(shapes: Record<string, number[]>): number {
  return Object.values(shapes).reduce((n, s) => n + s.reduce((a, b) => a * b, 1), 0);
}

export function baselineParameterCount(config: BaselineCnnConfig): number {
  return countShapes(baselineParamShapes(config));
}

/**
 * The Table 1 architecture with two 2x2 poolings and fc1 widened or narrowed so that the total parameter count is as
 * close as possible to `target` (section 5.2 compares CapsNet with "a traditional convolutional model with a similar
 * number of parameters" on affNIST).
 */
export function matchedBaseline(shape: DataShape, target: number, base: Omit<BaselineCnnConfig, keyof DataShape> = PAPER_BASELINES.mnist): BaselineCnnConfig {
  const pooled: BaselineCnnConfig = { ...base, ...shape, poolAfter: [0, 1], fc: [...base.fc] };
  const withWidth = (w: number): BaselineCnnConfig => ({ ...pooled, fc: [w, ...pooled.fc.slice(1)] });
  const a = baselineParameterCount(withWidth(1));
  const perUnit = baselineParameterCount(withWidth(2)) - a;
  const width = Math.max(1, Math.round(1 + (target - a) / perUnit));
  return withWidth(width);
}
