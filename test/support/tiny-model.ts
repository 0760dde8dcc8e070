/**
 * A tiny real CapsNet for tests: model/capsnet.ts's network on 12x10x1 inputs and 4 classes with seeded random
 * weights, exported by export/exporter.ts like any checkpoint, so the runtime tests run the real graph (routing
 * unrolled) in milliseconds. `tinyReference` is what its outputs are checked against: model/capsnet.ts's forward
 * pass on tfjs's cpu backend. `syntheticWeights` (no tfjs) also serves the export tests.
 */
import { type CapsNetConfig, METADATA_KEYS, presetConfig, paramShapes, Rng } from '@capsnet-onnx/core';
import { initBackend } from '../../packages/capsnet/src/train/backends/backend.ts';
import { decode, forward } from '../../packages/capsnet/src/model/capsnet.ts';
import { variablesFromWeights } from '../../packages/capsnet/src/model/layers.ts';
import { type ExportProvenance, buildCapsNetModels, recordDecoderHash } from '../../packages/capsnet/src/export/exporter.ts';
import { encodeModel } from '../../packages/capsnet/src/export/onnx-schema.ts';

/** 12x10 (not square, so a swapped height and width shows): conv1 -> 10x8, primary capsules 4x3x2 = 24 of 4-D. */
export const TINY_CONFIG: CapsNetConfig = presetConfig(
  'small',
  { inputHeight: 12, inputWidth: 10, inputChannels: 1, numClasses: 4 },
  {
    conv1Filters: 4,
    conv1Kernel: 3,
    primaryMaps: 2,
    primaryDim: 4,
    primaryKernel: 3,
    digitDim: 6,
    decoderHidden: [8, 16],
  },
);

/**
 * A larger square test CapsNet (20x20x1, 4 classes: conv1 -> 16x16, primary capsules 6x6x2 = 72 of 4-D) for the
 * export, model and WebGPU tests that need more than TINY_CONFIG's 24 capsules.
 */
export const SQUARE_CONFIG: CapsNetConfig = presetConfig(
  'small',
  { inputHeight: 20, inputWidth: 20, inputChannels: 1, numClasses: 4 },
  {
    conv1Filters: 8,
    conv1Kernel: 5,
    primaryMaps: 2,
    primaryDim: 4,
    primaryKernel: 5,
    digitDim: 6,
    decoderHidden: [16, 24],
  },
);

export const TINY_PROVENANCE: ExportProvenance = {
  classLabels: ['class0', 'class1', 'class2', 'class3'],
  dataset: 'tiny-random',
  testAccuracy: 0.5,
  checkpointSha256: '0'.repeat(64),
  exportedAt: new Date('2024-01-01T00:00:00.000Z'),
};

/** Seeded weights for every tensor of paramShapes(config), uniform in [-scale(name), scale(name)]. */
export function syntheticWeights(config: CapsNetConfig, seed: number, scale: (name: string) => number): Record<string, Float32Array> {
  const rng = new Rng(seed);
  const weights: Record<string, Float32Array> = {};
  for (const [name, shape] of Object.entries(paramShapes(config))) {
    const s = scale(name);
    const data = new Float32Array(shape.reduce((a, b) => a * b, 1));
    for (let i = 0; i < data.length; i++) data[i] = (2 * rng.next() - 1) * s;
    weights[name] = data;
  }
  return weights;
}

export interface TinyModel {
  config: CapsNetConfig;
  weights: Record<string, Float32Array>;
  model: Uint8Array;
  decoder: Uint8Array;
}

/**
 * The tiny CapsNet's model.onnx and model.decoder.onnx bytes. digit/W (W_ij) is large enough that the capsule
 * lengths spread out instead of all sitting near sqrt(epsilon). `metadata` replaces (undefined: removes)
 * metadata_props entries of both files, for checks on malformed models.
 */
export function tinyModel(metadata: Record<string, string | undefined> = {}): TinyModel {
  const config = TINY_CONFIG;
  const weights = syntheticWeights(config, 1, (name) => (name === 'digit/W' ? 1 : 0.4));
  const built = buildCapsNetModels(config, weights, TINY_PROVENANCE);
  [built.model, built.decoder].forEach((proto) => {
    const props = new Map((proto.metadata_props ?? []).map((p) => [p.key, p.value] as [string, string | undefined]));
    for (const [key, value] of Object.entries(metadata)) props.set(key, value);
    proto.metadata_props = [...props].filter((e): e is [string, string] => e[1] !== undefined).map(([key, value]) => ({ key, value }));
  });
  // The model names its decoder by hash: record the edited decoder's, unless the caller set that key itself.
  const decoderBytes = encodeModel(built.decoder);
  if (!(METADATA_KEYS.decoderSha256 in metadata)) recordDecoderHash(built.model, decoderBytes);
  const [model, decoder] = [encodeModel(built.model), decoderBytes];
  return { config, weights, model: model!, decoder: decoder! };
}

export interface TinyReference {
  /** Lengths [N, classes], capsules [N, classes, digitDim] and reconstruction [N, pixels] of N images (NHWC, [0, 1]). */
  classify(images: Float32Array): Promise<{ lengths: Float32Array; capsules: Float32Array; reconstruction: Float32Array }>;
  /** The decoder's reconstruction [N, pixels] of masked capsules [N, classes, digitDim]. */
  decode(masked: Float32Array): Promise<Float32Array>;
}

/** model/capsnet.ts on tfjs's cpu backend, with the tiny model's weights. */
export async function tinyReference(tiny: TinyModel): Promise<TinyReference> {
  const { tf } = await initBackend('cpu');
  const { config } = tiny;
  const params = variablesFromWeights(paramShapes(config), tiny.weights);
  const pixels = config.inputHeight * config.inputWidth * config.inputChannels;
  return {
    async classify(images) {
      const out = tf.tidy(() => {
        const x = tf.tensor4d(images, [images.length / pixels, config.inputHeight, config.inputWidth, config.inputChannels]);
        const { lengths, capsules, reconstruction } = forward(params, x, config);
        return [lengths, capsules, reconstruction];
      });
      const [lengths, capsules, reconstruction] = (await Promise.all(out.map((t) => t.data()))) as Float32Array[];
      tf.dispose(out);
      return { lengths: lengths!, capsules: capsules!, reconstruction: reconstruction! };
    },
    async decode(masked) {
      const caps = config.numClasses * config.digitDim;
      const out = tf.tidy(() => decode(params, tf.tensor3d(masked, [masked.length / caps, config.numClasses, config.digitDim]), config));
      const data = (await out.data()) as Float32Array;
      out.dispose();
      return data;
    },
  };
}
