/**
 * What `pretrained()` and the one-file entries (`@capsnet-onnx/mnist/pretrained/<name>[.<precision>]`) share: the
 * types, and the step from a file's URL to what `CapsNet.load` takes. Holds no URL of its own, so that a bundle
 * importing one entry emits that entry's files and no other model's.
 */
import type { ModelCard } from './card.ts';

/** Weight storage of a file (`capsnet export --precision`): fp32, fp16 (half the bytes) or int8 (per-channel, a quarter). */
export const PRETRAINED_PRECISIONS = ['fp32', 'fp16', 'int8'] as const;
export type PretrainedPrecision = (typeof PRETRAINED_PRECISIONS)[number];

export interface PretrainedModel<Name extends string = string> {
  name: Name;
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

/** The file name stem of each precision in a model's folder (`model.int8.onnx`, `model.int8.decoder.onnx`). */
export const FILE_STEM: Record<PretrainedPrecision, string> = { fp32: 'model', fp16: 'model.fp16', int8: 'model.int8' };

/**
 * A model's files from their URLs (`new URL(file, import.meta.url)` in the module that names them, whose own
 * `import.meta.url` is `namedIn`).
 * @throws Error when that module is not where the package put it (see `location`).
 */
export function pretrainedModel<Name extends string>(
  name: Name,
  precision: PretrainedPrecision,
  card: ModelCard,
  namedIn: string,
  urls: { model: URL; decoder: URL; dimensions: URL },
): PretrainedModel<Name> {
  if (namedIn.includes('/.vite/deps/')) throw preBundled();
  return {
    name,
    precision,
    model: location(urls.model),
    decoder: location(urls.decoder),
    card,
    dimensions: location(urls.dimensions),
  };
}

function preBundled(): Error {
  return new Error(
    "@capsnet-onnx/mnist was pre-bundled by Vite's dev server, which leaves its model files behind: " +
      "add optimizeDeps: { exclude: ['@capsnet-onnx/mnist'] } to vite.config.js",
  );
}

/**
 * A file path where there is a file system (Node, Deno, Bun), else the URL.
 * @throws Error when a bundler's dev server moved the naming module away from its files: Vite pre-bundles
 * dependencies into `node_modules/.vite/deps/`, where `new URL(file, import.meta.url)` no longer reaches `models/`
 * (a template URL then ends in `/undefined` or points into `.vite/deps/`, a literal one past `node_modules/`, and the
 * model's fetch fails later with a 404 naming neither).
 */
function location(url: URL): string {
  if (url.pathname.includes('/.vite/deps/') || url.pathname.endsWith('/undefined')) throw preBundled();
  const host = (globalThis as { process?: { versions?: { node?: string }; platform?: string } }).process;
  if (url.protocol === 'file:' && host?.versions?.node) {
    // decodeURIComponent over the pathname is what fileURLToPath does on POSIX; node:url stays out of browser bundles.
    return host.platform === 'win32' ? decodeURIComponent(url.pathname.slice(1)).replaceAll('/', '\\') : decodeURIComponent(url.pathname);
  }
  return url.href;
}
