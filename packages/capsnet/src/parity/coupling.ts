/**
 * The routing's own check in `capsnet parity`: the exported graph's `coupling` output (the last routing iteration's
 * coupling coefficients c_ij, export/routing.ts) against the tfjs reference's (model/routing.ts), both at the file's
 * routing. The runtime's Classifier does not return coupling, so this runs the file on onnxruntime-node's CPU
 * execution provider here, in batches, fetching that output only.
 */
import * as ort from 'onnxruntime-node';
import { IO_NAMES, type RoutingConfig } from '@capsnet-onnx/core';
import type { Reference } from './reference.ts';
import { PARITY_BATCH } from './reference.ts';

export interface CouplingCheck {
  /** The routing the file unrolls, which the reference ran. */
  routing: RoutingConfig;
  ranOn: string;
  /** Largest |c_ORT - c_tfjs| over every input, primary capsule and output capsule. */
  maxAbs: number;
  /** The lengths tolerance of the file's precision: coupling coefficients lie in [0, 1] as lengths nearly do. */
  tolerance: number;
  ok: boolean;
}

export async function couplingParity(
  modelPath: string,
  images: Float32Array,
  count: number,
  reference: Pick<Reference, 'coupling' | 'config'>,
  tolerance: number,
): Promise<CouplingCheck> {
  const { config } = reference;
  const pixels = images.length / count;
  const perImage = reference.coupling.length / count;
  const session = await ort.InferenceSession.create(modelPath, { executionProviders: ['cpu'] });
  let maxAbs = 0;
  try {
    for (let start = 0; start < count; start += PARITY_BATCH) {
      const n = Math.min(PARITY_BATCH, count - start);
      const x = new ort.Tensor('float32', images.slice(start * pixels, (start + n) * pixels), [n, config.inputHeight, config.inputWidth, config.inputChannels]);
      const out = await session.run({ [IO_NAMES.images]: x }, [IO_NAMES.coupling]);
      const got = out[IO_NAMES.coupling]!.data as Float32Array;
      if (got.length !== n * perImage) throw new Error(`coupling has ${got.length / n} values per image, the reference ${perImage}: re-export the model`);
      const want = reference.coupling.subarray(start * perImage, (start + n) * perImage);
      for (let i = 0; i < got.length; i++) {
        const d = Math.abs(got[i]! - want[i]!);
        if (!(d <= maxAbs)) maxAbs = d; // NaN-safe: a NaN difference becomes the max
      }
    }
  } finally {
    await session.release();
  }
  return { routing: config.routing, ranOn: 'onnxruntime-node, cpu execution provider', maxAbs, tolerance, ok: maxAbs <= tolerance };
}
