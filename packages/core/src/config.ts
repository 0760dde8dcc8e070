import { PAPER_ROUTING, type RoutingConfig, validateRouting } from './routing.ts';

/**
 * One config object for the whole model. The defaults are the paper's numbers
 * (Sabour, Frosst & Hinton 2017, section 4); the input shape and class count come from the data.
 */
export interface CapsNetConfig {
  inputHeight: number;
  inputWidth: number;
  inputChannels: number;
  numClasses: number;
  /** Conv1: filters, square kernel size, stride 1, ReLU. */
  conv1Filters: number;
  conv1Kernel: number;
  /** PrimaryCaps: `primaryMaps` convolutional maps of `primaryDim`-D capsules. */
  primaryMaps: number;
  primaryDim: number;
  primaryKernel: number;
  primaryStride: number;
  /** DigitCaps: one `digitDim`-D capsule per class. */
  digitDim: number;
  /** How the primary capsules are routed to the class capsules (core/routing.ts); the paper: dynamic, 3 iterations. */
  routing: RoutingConfig;
  /** Decoder hidden layer widths; the output layer has H*W*C sigmoid units. */
  decoderHidden: number[];
  /** Margin loss, eq. 4. */
  mPlus: number;
  mMinus: number;
  lambda: number;
  /** Weight of the summed squared reconstruction error. */
  reconstructionWeight: number;
  /** Epsilon inside the square root of squash, so zero-length vectors have finite value and gradient. */
  squashEpsilon: number;
  learningRate: number;
  /** Exponential decay: lr * decayRate^(step / decaySteps). */
  decayRate: number;
  decaySteps: number;
  /** Random translation of up to this many pixels, zero padded. */
  maxShift: number;
  // ---- The authors' code's choices (issue 13). The paper does not state these; the authors' released code
  // (Sarasra/models, research/capsules) makes them. Each is optional: absent means the paper's formula (or, where the
  // paper is silent, this project's choice), so old checkpoints and exports read the same. AUTHORS_CODE_CHOICES sets
  // all of them the authors' way, for an ablation.
  /** Factor on the margin loss (eq. 4). Paper: 1; the authors' code: 0.5. */
  marginLossScale?: number;
  /** How eq. 4's per-class terms combine: 'sum' over classes (the paper, L = sum_k L_k) or 'mean' (the authors' code). */
  marginLossReduction?: 'sum' | 'mean';
  /** A learned DigitCaps bias [classes, digitDim] added to s_j before squash, started at this value. Absent or null: no bias (the paper). Authors: 0.1. */
  digitCapsBias?: number | null;
  /** Factor on the primary-capsule convolution output before squash. Paper: 1; the authors' code: 1/32. */
  primaryScale?: number;
  /** Initial value of the primary-capsule convolution bias. Ours: 0; the authors' code: 0.1. */
  primaryBiasInit?: number;
  /**
   * Weight initialisation. 'glorot': Glorot-uniform kernels, N(0, 0.01^2) for W (ours); 'truncated-normal': normals
   * truncated at 2 sigma with sigma 0.05 for conv1, 0.1 for W and the decoder, 0.01 for the primary kernel (the authors').
   */
  init?: 'glorot' | 'truncated-normal';
  /** Adam's epsilon. Ours (tfjs's default): 1e-7; the authors' (TensorFlow's): 1e-8. */
  adamEpsilon?: number;
  /** The decayed learning rate never drops below this. Ours: 0; the authors' code: 1e-6. */
  learningRateFloor?: number;

  // ---- Section 7 (CIFAR-10, smallNORB, SVHN). Absent on MNIST-style runs, and in checkpoints written before. ----
  /**
   * The data set holds sourceHeight x sourceWidth images and the network sees inputHeight x inputWidth crops of
   * them: a random crop at training, the centre crop at test and in the exported model's expected input.
   */
  crop?: { sourceHeight: number; sourceWidth: number };
  /**
   * Training-time jitter, after the crop: a left-right flip with probability 1/2, a brightness delta uniform in
   * [-brightness, brightness] (pixel units, [0, 1] scale) and a contrast factor uniform in
   * [1 - contrast, 1 + contrast] about each channel's mean. Pixels are not clipped.
   */
  jitter?: { flip: boolean; brightness: number; contrast: number };
  /**
   * 'per-image': the network's first step maps each image to (x - mean) / max(std, 1/sqrt(H*W*C)) over all its
   * pixels (as tf.image.per_image_standardization), inside the exported graph too, so callers still feed [0, 1].
   */
  standardize?: 'per-image';
  /**
   * An extra "none-of-the-above" capsule in the routing softmax (section 7, CIFAR-10): each primary capsule may
   * send its vote there instead of to a class. It is no class: not in lengths, the loss or the decoder's mask.
   */
  noneOfTheAbove?: boolean;
}

/** Every field of the authors'-code block set as the authors' code has it (see CapsNetConfig). */
export const AUTHORS_CODE_CHOICES: Required<
  Pick<
    CapsNetConfig,
    'marginLossScale' | 'marginLossReduction' | 'digitCapsBias' | 'primaryScale' | 'primaryBiasInit' | 'init' | 'adamEpsilon' | 'learningRateFloor'
  >
> = {
  marginLossScale: 0.5,
  marginLossReduction: 'mean',
  digitCapsBias: 0.1,
  primaryScale: 1 / 32,
  primaryBiasInit: 0.1,
  init: 'truncated-normal',
  adamEpsilon: 1e-8,
  learningRateFloor: 1e-6,
};

/** The model sizes presetConfig knows: the paper's, and a narrower one for CPUs. */
export const PRESET_NAMES = ['paper', 'small'] as const;
export type PresetName = (typeof PRESET_NAMES)[number];

export interface DataShape {
  inputHeight: number;
  inputWidth: number;
  inputChannels: number;
  numClasses: number;
}

const PAPER: Omit<CapsNetConfig, keyof DataShape> = {
  conv1Filters: 256,
  conv1Kernel: 9,
  primaryMaps: 32,
  primaryDim: 8,
  primaryKernel: 9,
  primaryStride: 2,
  digitDim: 16,
  routing: PAPER_ROUTING,
  decoderHidden: [512, 1024],
  mPlus: 0.9,
  mMinus: 0.1,
  lambda: 0.5,
  reconstructionWeight: 0.0005,
  squashEpsilon: 1e-7,
  learningRate: 1e-3,
  decayRate: 0.96,
  decaySteps: 2000,
  maxShift: 2,
};

/** A narrower network that trains to >97% on the embedded digits in minutes on two CPU cores. */
const SMALL: Omit<CapsNetConfig, keyof DataShape> = {
  ...PAPER,
  conv1Filters: 64,
  primaryMaps: 8,
  decoderHidden: [256, 512],
  decaySteps: 500,
};

export const MNIST_SHAPE: DataShape = { inputHeight: 28, inputWidth: 28, inputChannels: 1, numClasses: 10 };

export function presetConfig(preset: PresetName, shape: DataShape = MNIST_SHAPE, overrides: Partial<CapsNetConfig> = {}): CapsNetConfig {
  const base = preset === 'paper' ? PAPER : preset === 'small' ? SMALL : undefined;
  if (!base) throw new Error(`unknown preset "${preset}": use "paper" or "small"`);
  const config = {
    ...base,
    ...shape,
    ...overrides,
    decoderHidden: [...(overrides.decoderHidden ?? base.decoderHidden)],
    routing: { ...(overrides.routing ?? base.routing) },
  };
  validateConfig(config);
  return config;
}

export function paperConfig(overrides: Partial<CapsNetConfig> = {}): CapsNetConfig {
  return presetConfig('paper', MNIST_SHAPE, overrides);
}

/** Spatial size after a valid convolution. */
export function convOutputSize(size: number, kernel: number, stride: number): number {
  return Math.floor((size - kernel) / stride) + 1;
}

/** The sizes every layer derives from the config. */
export function derivedSizes(config: CapsNetConfig) {
  const conv1H = convOutputSize(config.inputHeight, config.conv1Kernel, 1);
  const conv1W = convOutputSize(config.inputWidth, config.conv1Kernel, 1);
  const primaryH = convOutputSize(conv1H, config.primaryKernel, config.primaryStride);
  const primaryW = convOutputSize(conv1W, config.primaryKernel, config.primaryStride);
  return {
    conv1H,
    conv1W,
    primaryH,
    primaryW,
    /** Number of primary capsules: 32 * 6 * 6 = 1152 for the paper on 28x28. */
    numPrimaryCaps: primaryH * primaryW * config.primaryMaps,
    /** Capsules the routing softmax runs over: the classes, plus "none-of-the-above" when configured. */
    routedCaps: config.numClasses + (config.noneOfTheAbove ? 1 : 0),
    pixels: config.inputHeight * config.inputWidth * config.inputChannels,
  };
}

export function validateConfig(config: CapsNetConfig): void {
  const positiveInts: (keyof CapsNetConfig)[] = [
    'inputHeight',
    'inputWidth',
    'inputChannels',
    'numClasses',
    'conv1Filters',
    'conv1Kernel',
    'primaryMaps',
    'primaryDim',
    'primaryKernel',
    'primaryStride',
    'digitDim',
    'decaySteps',
  ];
  for (const key of positiveInts) {
    const value = config[key];
    if (typeof value !== 'number' || !Number.isInteger(value) || value < 1) {
      throw new Error(`config.${key} must be a positive integer, got ${JSON.stringify(value)}`);
    }
  }
  validateRouting(config.routing);
  if (config.numClasses < 2) throw new Error(`config.numClasses must be at least 2, got ${config.numClasses}`);
  if (!Array.isArray(config.decoderHidden) || !config.decoderHidden.every((w) => Number.isInteger(w) && w > 0)) {
    throw new Error(`config.decoderHidden must be positive integers, got ${JSON.stringify(config.decoderHidden)}`);
  }
  const finite = (key: keyof CapsNetConfig, positive: boolean) => {
    const value = config[key];
    if (value === undefined) return;
    if (typeof value !== 'number' || !Number.isFinite(value) || (positive ? value <= 0 : value < 0)) {
      throw new Error(`config.${key} must be a ${positive ? 'positive' : 'non-negative'} number, got ${JSON.stringify(value)}`);
    }
  };
  finite('marginLossScale', true);
  finite('primaryScale', true);
  finite('adamEpsilon', true);
  finite('learningRateFloor', false);
  if (config.marginLossReduction !== undefined && !['sum', 'mean'].includes(config.marginLossReduction)) {
    throw new Error(`config.marginLossReduction must be "sum" or "mean", got ${JSON.stringify(config.marginLossReduction)}`);
  }
  if (config.init !== undefined && !['glorot', 'truncated-normal'].includes(config.init)) {
    throw new Error(`config.init must be "glorot" or "truncated-normal", got ${JSON.stringify(config.init)}`);
  }
  for (const key of ['digitCapsBias', 'primaryBiasInit'] as const) {
    const value = config[key];
    if (value !== undefined && value !== null && (typeof value !== 'number' || !Number.isFinite(value))) {
      throw new Error(`config.${key} must be a number${key === 'digitCapsBias' ? ' or null' : ''}, got ${JSON.stringify(value)}`);
    }
  }
  if (config.crop && (config.crop.sourceHeight < config.inputHeight || config.crop.sourceWidth < config.inputWidth)) {
    throw new Error(
      `config.crop: ${config.inputHeight}x${config.inputWidth} crops do not fit in ${config.crop.sourceHeight}x${config.crop.sourceWidth} images`,
    );
  }
  const { primaryH, primaryW } = derivedSizes(config);
  if (primaryH < 1 || primaryW < 1) {
    throw new Error(
      `input ${config.inputHeight}x${config.inputWidth} is too small for conv1 ${config.conv1Kernel}x${config.conv1Kernel} ` +
        `then primary capsules ${config.primaryKernel}x${config.primaryKernel} stride ${config.primaryStride}`,
    );
  }
}
