/**
 * What the three browser entries share (`/web`, `/web/wasm`, `/web/webgpu`): fetching the model and decoder (with
 * byte progress), configuring the onnxruntime-web build each provider runs on, and the `CapsNet` object. An entry
 * names its providers and, per provider, which onnxruntime-web build (wasm-files.ts) to import.
 */
import type { Env } from 'onnxruntime-common';
import { type DecoderSource, type OrtApi, loadClassifier, modelAndOptions, toModelBytes } from './classifier.ts';
import type { Classifier, DeviceName, LoadOptions, ModelSource } from './contract.ts';
import { ModelFileError, decoderUrlFor } from '@capsnet-onnx/core';
import { autoOrder, devicesOf } from './devices.ts';
import { threadCount, type Provider } from './providers/provider.ts';
import { ORT_WASM_BUILDS, type OrtWasmBuild } from './wasm-files.ts';

/**
 * What the entries need of an onnxruntime-web build, typed by onnxruntime-common (a dependency) so that the
 * declarations need no onnxruntime-web: a Node app that type-checks against this package may not have it installed.
 */
export type OrtWebModule = OrtApi & { env: Env };

/** One step of a load: `loaded` bytes of `file` so far, of `total` (null: the server sent no plain Content-Length). */
export interface LoadProgress {
  file: 'model' | 'decoder' | 'wasm';
  url: string;
  loaded: number;
  total: number | null;
}

export interface WebLoadOptions extends LoadOptions {
  /**
   * Where onnxruntime-web fetches its .wasm and loader (`ORT_WASM_BUILDS`): a URL prefix ending in '/' such as
   * '/ort/', or onnxruntime-web's `{ wasm: url, mjs: url }` form (e.g. a bundler's asset URLs). Default: beside
   * onnxruntime-web's module, which bundlers that handle `new URL(file, import.meta.url)` (Vite, webpack 5) emit and
   * rewrite themselves. Serve the folder `ortWasmDir()` of `@capsnet-onnx/runtime/wasm-assets` at the prefix.
   * A process-wide onnxruntime-web setting: it takes effect at the first session of each build.
   */
  wasmPaths?: string | { wasm?: string | URL; mjs?: string | URL };
  /**
   * Called as the model, the decoder and (when `wasmPaths` names its URL) onnxruntime-web's .wasm download, with
   * the bytes loaded so far: e.g. `({ file, loaded, total }) => bar.value = loaded / total`. With it, the .wasm is
   * fetched by the runtime (and handed to onnxruntime-web as `wasmBinary`) at the same time as the model.
   */
  onProgress?: (progress: LoadProgress) => void;
}

export interface WebEntry {
  /** The entry's name in device errors, e.g. `@capsnet-onnx/runtime/web/wasm (onnxruntime-web, plain wasm build)`. */
  name: string;
  providers: readonly Provider[];
  autoOrder: readonly DeviceName[];
  /** The build a provider runs on, and how to import it; `loaded` lists the builds already imported. */
  buildFor(device: DeviceName, loaded: ReadonlySet<OrtWasmBuild>): OrtWasmBuild;
  importBuild(build: OrtWasmBuild): Promise<OrtWebModule>;
  /** Started (not awaited) at each load: `/web` loads the JPEG decoder there, so that its decodeImage stays synchronous. */
  onLoad?(): void;
}

/** Bytes of `url`, reporting progress; null on HTTP 404; a failed fetch is a ModelFileError naming the URL. */
export async function fetchBytes(url: string, file: LoadProgress['file'], onProgress?: (p: LoadProgress) => void): Promise<Uint8Array | null> {
  let response: Response;
  try {
    response = await fetch(url);
  } catch (e) {
    throw new ModelFileError(`cannot fetch ${file} ${url}: ${(e as Error).message}`, url, 'UNREADABLE');
  }
  if (response.status === 404) return null;
  if (!response.ok) throw new ModelFileError(`cannot fetch ${file} ${url}: HTTP ${response.status}`, url, 'UNREADABLE');
  if (!onProgress || !response.body) return new Uint8Array(await response.arrayBuffer());
  // Content-Length counts the encoded bytes: with a Content-Encoding the total is unknown.
  const length = Number(response.headers.get('content-length'));
  const total = response.headers.get('content-encoding') || !(length > 0) ? null : length;
  const chunks: Uint8Array[] = [];
  let loaded = 0;
  onProgress({ file, url, loaded, total });
  const reader = response.body.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      chunks.push(value);
      loaded += value.byteLength;
      onProgress({ file, url, loaded, total });
    }
  } catch (e) {
    throw new ModelFileError(`cannot fetch ${file} ${url}: the download broke off after ${loaded} bytes (${(e as Error).message})`, url, 'UNREADABLE');
  }
  if (chunks.length === 1) return chunks[0]!;
  const bytes = new Uint8Array(loaded);
  let at = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, at);
    at += chunk.byteLength;
  }
  return bytes;
}

/** The URL `wasmPaths` gives a build's .wasm, or null when onnxruntime-web finds it itself. */
function wasmUrl(build: OrtWasmBuild, paths: WebLoadOptions['wasmPaths']): string | null {
  if (typeof paths === 'string') return `${paths}${ORT_WASM_BUILDS[build].wasm}`;
  if (paths?.wasm) return String(paths.wasm);
  return null;
}

/** An onnxruntime-web build, imported and configured once per page (its settings take effect at its first session). */
interface BuildState {
  module: Promise<OrtWebModule>;
}

/** The `CapsNet` object of a browser entry. */
/**
 * An entry's providers and `auto` order, from the device table's `web` rows that it implements (in table order).
 * Entries import their provider files by name, not by file name as the Node entry does, because browser bundlers
 * follow static imports only: a new browser provider is a row, a file and an import in the entries that offer it.
 */
export function tableProviders(implemented: readonly Provider[]): { providers: Provider[]; autoOrder: DeviceName[] } {
  const providers = devicesOf('web').flatMap((row) => implemented.filter((p) => p.row === row));
  const devices = new Set(providers.map((p) => p.device));
  return { providers, autoOrder: autoOrder('web').filter((d): d is DeviceName => devices.has(d as DeviceName)) };
}

export function webCapsNet(entry: WebEntry) {
  const builds = new Map<OrtWasmBuild, BuildState>();

  /** Import `build`; before its first session, apply the options (and fetch the .wasm with progress when asked). */
  function ortFor(build: OrtWasmBuild, options: WebLoadOptions, threads: number | undefined): Promise<OrtWebModule> {
    let state = builds.get(build);
    if (!state) {
      const url = options.onProgress ? wasmUrl(build, options.wasmPaths) : null;
      const binary = url ? fetchBytes(url, 'wasm', options.onProgress) : null;
      binary?.catch(() => {}); // awaited below; a model failure first must not leave it unhandled
      const module = entry.importBuild(build).then(async (ort) => {
        if (threads) ort.env.wasm.numThreads = threads;
        if (options.wasmPaths) ort.env.wasm.wasmPaths = options.wasmPaths;
        const bytes = await binary;
        if (bytes) ort.env.wasm.wasmBinary = bytes;
        else if (url)
          throw new ModelFileError(`onnxruntime-web's ${url} was not found (HTTP 404): serve ortWasmDir() at the wasmPaths prefix`, url, 'NOT_FOUND');
        return ort;
      });
      state = { module };
      builds.set(build, state);
      module.catch(() => builds.delete(build));
    }
    return state.module;
  }

  return {
    devices: entry.providers.map((p) => p.device),
    autoOrder: entry.autoOrder,

    /**
     * Load model.onnx (a URL, its bytes, or `{ model, decoder }` such as `pretrained('mnist-small')`) and its decoder:
     * `options.decoder` (bytes or URL), the object's `decoder`, `<model>.decoder.onnx` beside the model by default,
     * or none with `{ decoder: false }` (then `decode()` is refused). The model, the decoder and, with `onProgress`,
     * the .wasm are fetched at once.
     */
    async load(source: ModelSource, loadOptions: WebLoadOptions = {}): Promise<Classifier> {
      const { model: urlOrBytes, options } = modelAndOptions(source, loadOptions);
      const threads = threadCount(options.threads);
      entry.onLoad?.();
      const onProgress = options.onProgress;
      if (onProgress !== undefined && typeof onProgress !== 'function') throw new TypeError('onProgress must be a function');
      // A build known before the device is chosen starts downloading with the model.
      const loaded = new Set(builds.keys());
      const early = options.device && options.device !== 'auto' ? options.device : entry.providers.length === 1 ? entry.providers[0]!.device : null;
      if (early && entry.providers.some((p) => p.device === early)) ortFor(entry.buildFor(early, loaded), options, threads).catch(() => {});
      let decoder: DecoderSource;
      if (options.decoder === false)
        decoder = async () => ({ missing: 'the decoder was not loaded (CapsNet.load with { decoder: false }): load without it to decode' });
      else if (options.decoder !== undefined && typeof options.decoder !== 'string') decoder = toModelBytes(options.decoder, 'options.decoder');
      else {
        const url = typeof options.decoder === 'string' ? options.decoder : typeof urlOrBytes === 'string' ? decoderUrlFor(urlOrBytes) : null;
        const named = typeof options.decoder === 'string';
        const fetching = url ? fetchBytes(url, 'decoder', onProgress) : null;
        fetching?.catch(() => {});
        decoder = async () => {
          if (!url || !fetching) return { missing: 'the model was loaded from bytes: pass { decoder: bytes or URL } to CapsNet.load' };
          const fetched = await fetching;
          if (!fetched && named) throw new ModelFileError(`decoder file ${url} was not found (HTTP 404): check the URL`, url, 'NOT_FOUND');
          return fetched ?? { missing: `${url} was not found (\`capsnet export\` writes it beside the model)`, path: url };
        };
      }
      let bytes: Uint8Array;
      if (typeof urlOrBytes === 'string') {
        const fetched = await fetchBytes(urlOrBytes, 'model', onProgress);
        if (!fetched)
          throw new ModelFileError(
            `model file ${urlOrBytes} was not found (HTTP 404): check the URL, or export one with \`capsnet export\``,
            urlOrBytes,
            'NOT_FOUND',
          );
        bytes = fetched;
      } else bytes = toModelBytes(urlOrBytes, 'the model');
      const ort = async (provider: Provider): Promise<OrtApi> => {
        const build = entry.buildFor(provider.device, new Set(builds.keys()));
        options.log?.(`onnxruntime-web build: ${build === 'wasm' ? 'plain wasm' : 'JSEP (webgpu + wasm)'} (${ORT_WASM_BUILDS[build].wasm})`);
        return (await ortFor(build, options, threads)) as unknown as OrtApi;
      };
      return loadClassifier(
        ort,
        bytes,
        typeof urlOrBytes === 'string' ? urlOrBytes : 'the model',
        decoder,
        entry.providers,
        entry.autoOrder,
        options,
        entry.name,
      );
    },

    /** Each device of this entry and why it cannot run here (null: it can be tried). */
    async probe(): Promise<Record<string, string | null>> {
      const out: Record<string, string | null> = {};
      for (const p of entry.providers) out[p.device] = await p.unavailable();
      return out;
    },
  };
}
