/**
 * The parity inputs: real test digits, seeded uniform-random images, one all-zero and one all-one image.
 * Ordered so any prefix mixes the kinds: the WebGPU backends (slow on a software adapter) take the first few.
 */
import { type CapsNetConfig, Rng } from '@capsnet-onnx/core';
import { loadDataset, loadMnistSample } from '../data/datasets.ts';
import { networkView, sourceShape } from '../data/augment.ts';

export interface ParityInputs {
  images: Float32Array;
  count: number;
  /** Per image: `digit:<test index> (label L)`, `random:<k>`, `zeros` or `ones`. */
  kinds: string[];
  /** Why there are no real images, when there are none. */
  note?: string;
}

export interface InputCounts {
  digits: number;
  random: number;
  seed?: number;
}

function realTestImages(
  config: CapsNetConfig,
  dataset: string | undefined,
  wanted: number,
): { images: Float32Array; labels: Int32Array; name: string } | string {
  const pixels = config.inputHeight * config.inputWidth * config.inputChannels;
  const tries = [dataset, 'mnist-sample'].filter((d): d is string => Boolean(d));
  const problems: string[] = [];
  for (const spec of tries) {
    try {
      const data = spec === 'mnist-sample' ? loadMnistSample() : loadDataset(spec);
      const { shape } = data;
      // A model trained on crops takes the centre crop of the data set's images.
      const source = sourceShape(config);
      if (shape.inputHeight !== source.height || shape.inputWidth !== source.width || shape.inputChannels !== source.channels) {
        problems.push(
          `${spec} images are ${shape.inputHeight}x${shape.inputWidth}x${shape.inputChannels}, the model ` +
            `takes ${config.inputHeight}x${config.inputWidth}x${config.inputChannels}`,
        );
        continue;
      }
      const n = Math.min(wanted, data.test.count);
      const sourcePixels = source.height * source.width * source.channels;
      const view = networkView({ images: data.test.images.subarray(0, n * sourcePixels), labels: data.test.labels.subarray(0, n), count: n }, config);
      return { images: view.images.subarray(0, n * pixels), labels: view.labels, name: spec };
    } catch (e) {
      problems.push(`${spec}: ${(e as Error).message}`);
    }
  }
  return `no real test images (${problems.join('; ')})`;
}

export function parityInputs(config: CapsNetConfig, dataset: string | undefined, counts: InputCounts): ParityInputs {
  const pixels = config.inputHeight * config.inputWidth * config.inputChannels;
  const rng = new Rng(counts.seed ?? 7);
  const real = counts.digits > 0 ? realTestImages(config, dataset, counts.digits) : 'no real images requested';
  const digits: Array<{ image: Float32Array; kind: string }> = [];
  if (typeof real !== 'string') {
    for (let i = 0; i < real.labels.length; i++) {
      digits.push({ image: real.images.subarray(i * pixels, (i + 1) * pixels), kind: `${real.name}:${i} (label ${real.labels[i]})` });
    }
  }
  const random = Array.from({ length: counts.random }, (_, k) => ({
    image: Float32Array.from({ length: pixels }, () => rng.next()),
    kind: `random:${k}`,
  }));
  const zeros = { image: new Float32Array(pixels), kind: 'zeros' };
  const ones = { image: new Float32Array(pixels).fill(1), kind: 'ones' };
  const ordered = [...digits.slice(0, 1), ...random.slice(0, 1), zeros, ones, ...digits.slice(1), ...random.slice(1)];
  const images = new Float32Array(ordered.length * pixels);
  ordered.forEach((o, i) => images.set(o.image, i * pixels));
  return { images, count: ordered.length, kinds: ordered.map((o) => o.kind), ...(typeof real === 'string' ? { note: real } : {}) };
}
