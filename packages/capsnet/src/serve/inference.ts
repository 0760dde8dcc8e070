/**
 * The two batched queues in front of the classifier (serve/batcher.ts), shared by /v1, /v2 and /healthz: one for
 * images (classify), one for capsule sets (decode). Every request is checked on its own before it joins a batch,
 * so one client's bad values are that client's 400 and never fail the run they would have shared.
 */
import type { Classification, Classifier } from '@capsnet-onnx/runtime';
import { Batcher, type BatchPolicy, type BatchStats } from './batcher.ts';
import { badRequest } from './errors.ts';

export interface Inference {
  classify: Batcher<Float32Array, Classification>;
  decode: Batcher<Float32Array, Float32Array>;
  stats(): { classify: BatchStats; decode: BatchStats };
  /**
   * Count one 4xx answer to a request for `queue` (its input was refused): `invalidRequests` counts these, not
   * only the batcher's own value checks, so a body that never parsed or an image that never decoded counts too.
   */
  countInvalid(queue: 'classify' | 'decode'): void;
  /** A run in flight or requests queued, on either queue. */
  busy(): boolean;
  /** Resolves when both queues are empty and no run is in flight. */
  idle(): Promise<void>;
}

export function createInference(classifier: Classifier, policy: BatchPolicy): Inference {
  const m = classifier.metadata;
  const pixels = m.inputHeight * m.inputWidth * m.inputChannels;
  const capsules = m.numClasses * m.digitDim;
  const name = (items: unknown[], one: string, k: number) => (items.length === 1 ? `the ${one}` : `${one} ${k}`);
  const classify = new Batcher<Float32Array, Classification>(
    (images) => classifier.classify(images),
    policy,
    (items) => items.forEach((item, k) => checkValues(item, pixels, name(items, 'image', k), 'pixel', [0, 1])),
  );
  const decode = new Batcher<Float32Array, Float32Array>(
    (sets) => classifier.decode(sets),
    policy,
    (items) => items.forEach((item, k) => checkValues(item, capsules, name(items, 'capsule set', k), 'capsule', null)),
  );
  // The HTTP layer sees every refusal (the batcher only its own), so it counts them all, replacing the batcher's count.
  const invalid = { classify: 0, decode: 0 };
  const stats = () => ({
    classify: { ...classify.stats(), invalidRequests: invalid.classify },
    decode: { ...decode.stats(), invalidRequests: invalid.decode },
  });
  return {
    classify,
    decode,
    stats,
    countInvalid: (queue) => {
      invalid[queue]++;
    },
    busy: () => Object.values(stats()).some((s) => s.inFlight || s.queued > 0),
    idle: async () => {
      await Promise.all([classify.idle(), decode.idle()]);
    },
  };
}

/**
 * One item of a request, checked before it joins a batch: its length, finite values and (for pixels) the range
 * [0, 1]. Throws the request's own 400 naming the item, the value and the fix.
 */
export function checkValues(item: Float32Array, size: number, what: string, unit: string, range: [number, number] | null): void {
  if (!(item instanceof Float32Array) || item.length !== size) {
    throw badRequest('WRONG_DIMENSIONS', `${what} has ${item?.length ?? 0} values; the model takes ${size}: send exactly that many`);
  }
  for (let i = 0; i < item.length; i++) {
    const v = item[i]!;
    if (!Number.isFinite(v)) throw badRequest('NOT_FINITE', `${what} has ${v} at flat index ${i}: send finite numbers only`);
    if (range && (v < range[0] || v > range[1])) {
      const hint = range[1] === 1 && v > 1 && v <= 255 ? ' (divide 0-255 values by 255 before sending)' : '';
      throw badRequest('OUT_OF_RANGE', `${what} has the ${unit} value ${v} at flat index ${i}: ${unit} values must be in [${range[0]}, ${range[1]}]${hint}`);
    }
  }
}
