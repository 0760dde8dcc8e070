/**
 * A CapsNet-shaped stand-in model for runtime tests: the exporter's graph I/O names, shapes and metadata_props,
 * but a few matrix products instead of the network, so it loads and runs in milliseconds on every provider.
 * `fakeReference` computes its outputs in plain JavaScript (float64) for checking.
 */
import { IO_NAMES, METADATA_KEYS } from '../runtime/contract.ts';
import { encodeModel, type ModelSpec } from './onnx-writer.ts';

export interface FakeShape {
  inputHeight: number;
  inputWidth: number;
  inputChannels: number;
  numClasses: number;
  digitDim: number;
  inputCaps: number;
}

export const FAKE_SHAPE: FakeShape = { inputHeight: 6, inputWidth: 5, inputChannels: 1, numClasses: 4, digitDim: 3, inputCaps: 2 };

export interface FakeModel {
  model: Uint8Array;
  decoder: Uint8Array;
  shape: FakeShape;
  weights: { capsule: Float32Array; decoder: Float32Array; coupling: Float32Array };
}

function seeded(count: number, seed: number, scale: number): Float32Array {
  const out = new Float32Array(count);
  let s = seed >>> 0;
  for (let i = 0; i < count; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = ((s / 2 ** 32) * 2 - 1) * scale;
  }
  return out;
}

const i64 = (...values: number[]) => BigInt64Array.from(values.map(BigInt));

export function fakeModel(shape: FakeShape = FAKE_SHAPE, metadataOverrides: Record<string, string | undefined> = {}): FakeModel {
  const { inputHeight: h, inputWidth: w, inputChannels: c, numClasses: k, digitDim: d, inputCaps: p } = shape;
  const pixels = h * w * c;
  const weights = { capsule: seeded(pixels * k * d, 1, 0.5), decoder: seeded(k * d * pixels, 2, 1), coupling: seeded(pixels * p * k, 3, 1) };
  const config = { ...shape, routingIterations: 3, conv1Filters: 1, decoderHidden: [] };
  const metadata: Record<string, string | undefined> = {
    [METADATA_KEYS.config]: JSON.stringify(config),
    [METADATA_KEYS.routingIterations]: '3',
    [METADATA_KEYS.classLabels]: JSON.stringify(Array.from({ length: k }, (_, i) => `class${i}`)),
    [METADATA_KEYS.dataset]: 'fake',
    [METADATA_KEYS.testAccuracy]: '0.5',
    [METADATA_KEYS.checkpointSha256]: '0'.repeat(64),
    [METADATA_KEYS.exportedAt]: '2024-01-01T00:00:00.000Z',
    ...metadataOverrides,
  };
  const definedMetadata = Object.fromEntries(Object.entries(metadata).filter((e): e is [string, string] => e[1] !== undefined));
  const decoderNodes: ModelSpec['nodes'] = [
    { op: 'Reshape', inputs: ['caps_in', 'shape_flat_caps'], outputs: ['caps_flat'] },
    { op: 'MatMul', inputs: ['caps_flat', 'W_dec'], outputs: ['dec_logits'] },
    { op: 'Sigmoid', inputs: ['dec_logits'], outputs: [IO_NAMES.reconstruction] },
  ];
  const decoderInits = [
    { name: 'shape_flat_caps', dims: [2], data: i64(-1, k * d) },
    { name: 'W_dec', dims: [k * d, pixels], data: weights.decoder },
  ];
  const model = encodeModel({
    nodes: [
      { op: 'Reshape', inputs: [IO_NAMES.images, 'shape_flat'], outputs: ['flat'] },
      { op: 'MatMul', inputs: ['flat', 'W_caps'], outputs: ['caps_pre'] },
      { op: 'Tanh', inputs: ['caps_pre'], outputs: ['caps_tanh'] },
      { op: 'Reshape', inputs: ['caps_tanh', 'shape_caps'], outputs: [IO_NAMES.capsules] },
      { op: 'Mul', inputs: [IO_NAMES.capsules, IO_NAMES.capsules], outputs: ['caps_sq'] },
      { op: 'ReduceSum', inputs: ['caps_sq', 'axes_last'], outputs: ['caps_sqnorm'], attributes: { keepdims: 0 } },
      { op: 'Sqrt', inputs: ['caps_sqnorm'], outputs: [IO_NAMES.lengths] },
      { op: 'Identity', inputs: [IO_NAMES.capsules], outputs: ['caps_in'] },
      ...decoderNodes,
      { op: 'MatMul', inputs: ['flat', 'W_coup'], outputs: ['coup_pre'] },
      { op: 'Reshape', inputs: ['coup_pre', 'shape_coup'], outputs: ['coup_logits'] },
      { op: 'Softmax', inputs: ['coup_logits'], outputs: [IO_NAMES.coupling], attributes: { axis: -1 } },
    ],
    initializers: [
      { name: 'shape_flat', dims: [2], data: i64(-1, pixels) },
      { name: 'W_caps', dims: [pixels, k * d], data: weights.capsule },
      { name: 'shape_caps', dims: [3], data: i64(-1, k, d) },
      { name: 'axes_last', dims: [1], data: i64(-1) },
      { name: 'shape_coup', dims: [3], data: i64(-1, p, k) },
      { name: 'W_coup', dims: [pixels, p * k], data: weights.coupling },
      ...decoderInits,
    ],
    inputs: [{ name: IO_NAMES.images, shape: ['N', h, w, c] }],
    outputs: [
      { name: IO_NAMES.lengths, shape: ['N', k] },
      { name: IO_NAMES.capsules, shape: ['N', k, d] },
      { name: IO_NAMES.reconstruction, shape: ['N', pixels] },
      { name: IO_NAMES.coupling, shape: ['N', p, k] },
    ],
    metadata: definedMetadata,
  });
  const decoder = encodeModel({
    nodes: [{ op: 'Identity', inputs: [IO_NAMES.maskedCapsules], outputs: ['caps_in'] }, ...decoderNodes],
    initializers: decoderInits,
    inputs: [{ name: IO_NAMES.maskedCapsules, shape: ['N', k, d] }],
    outputs: [{ name: IO_NAMES.reconstruction, shape: ['N', pixels] }],
    metadata: definedMetadata,
  });
  return { model, decoder, shape, weights };
}

/** The stand-in's outputs for one image (pixels in [0,1]), in float64. */
export function fakeReference(fake: FakeModel, image: Float32Array) {
  const { numClasses: k, digitDim: d } = fake.shape;
  const pixels = image.length;
  const capsules = new Float64Array(k * d);
  for (let j = 0; j < k * d; j++) {
    let s = 0;
    for (let i = 0; i < pixels; i++) s += image[i]! * fake.weights.capsule[i * k * d + j]!;
    capsules[j] = Math.tanh(s);
  }
  const lengths = new Float64Array(k);
  for (let j = 0; j < k; j++) {
    let s = 0;
    for (let e = 0; e < d; e++) s += capsules[j * d + e]! ** 2;
    lengths[j] = Math.sqrt(s);
  }
  return { capsules, lengths, reconstruction: fakeDecode(fake, capsules) };
}

export function fakeDecode(fake: FakeModel, capsules: ArrayLike<number>): Float64Array {
  const kd = fake.shape.numClasses * fake.shape.digitDim;
  const pixels = fake.weights.decoder.length / kd;
  const out = new Float64Array(pixels);
  for (let o = 0; o < pixels; o++) {
    let s = 0;
    for (let j = 0; j < kd; j++) s += capsules[j]! * fake.weights.decoder[j * pixels + o]!;
    out[o] = 1 / (1 + Math.exp(-s));
  }
  return out;
}
