/**
 * Browser entry point: CapsNet over onnxruntime-web, devices webgpu and wasm. The .wasm it fetches: see `wasmPaths`.
 * In Node, `onnxruntime-web` resolves to its wasm-only build, so this entry also runs device "wasm" there.
 *
 *   const model = await CapsNet.load('/models/model.onnx', { device: 'auto' });
 *
 * `auto` tries webgpu, then wasm; it passes over a software WebGPU adapter (SwiftShader), slower than wasm.
 */
import * as ort from 'onnxruntime-web';
import { type DecoderSource, type OrtApi, loadClassifier, toModelBytes } from './classifier.ts';
import type { Classifier, DeviceName, LoadOptions } from './contract.ts';
import { ModelFileError, decoderUrlFor } from '@capsnet-onnx/core';
import { autoOrder, devicesOf } from './devices.ts';
import { threadCount, type Provider } from './providers/provider.ts';
import { webWasm } from './providers/web-wasm.ts';
import { webWebGpu } from './providers/web-webgpu.ts';

export * from './contract.ts';
// The image pipeline (the core's), for apps that decode files or want to see what the model sees.
export {
  DEFAULT_IMAGE_LIMITS,
  ImageError,
  decodeImage,
  imageFormat,
  readImageHeader,
  type ImageLimits,
  type RgbaImage,
  POLARITIES,
  PreprocessError,
  prepareImage,
  type Polarity,
  type PreparedImage,
  type Preprocessing,
  type Raster,
} from '@capsnet-onnx/core';
export { webGpuAdapterInfo, describeAdapter } from './providers/web-webgpu.ts';

/**
 * onnxruntime-web's providers, the device table's `web` rows. Imported here by name, not by file name as the Node
 * entry does, because browser bundlers follow static imports only: a new browser provider is a row, a file and a
 * line here. A row without its provider is an error at import.
 */
const IMPLEMENTED: readonly Provider[] = [webWebGpu, webWasm];
const WEB_PROVIDERS: readonly Provider[] = devicesOf('web').map((row) => {
  const provider = IMPLEMENTED.find((p) => p.row === row);
  if (!provider)
    throw new Error(`device-table row ${row.provider} has no provider in @capsnet-onnx/runtime/web: import providers/${row.provider}.ts in web.ts`);
  return provider;
});
const WEB_AUTO_ORDER = autoOrder('web') as DeviceName[];

export { ORT_WASM_FILES } from './wasm-files.ts';

export interface WebLoadOptions extends LoadOptions {
  /**
   * Where onnxruntime-web fetches its .wasm (`ORT_WASM_FILES`): a URL prefix ending in '/' such as '/ort/', or
   * onnxruntime-web's `{ wasm: url }` form (e.g. a bundler's asset URL). Default: beside onnxruntime-web's module,
   * which bundlers that handle `new URL(file, import.meta.url)` (Vite, webpack 5) emit and rewrite themselves.
   * Serve the folder `ortWasmDir()` of `@capsnet-onnx/runtime/wasm-assets` at the prefix; nothing to copy.
   * A process-wide onnxruntime-web setting: it takes effect at the first session.
   */
  wasmPaths?: string | { wasm?: string | URL; mjs?: string | URL };
}

/** A model or decoder file's bytes, null on HTTP 404; a failed fetch is a ModelFileError naming the URL. */
async function fetchBytes(url: string, what: string): Promise<Uint8Array | null> {
  let response: Response;
  try {
    response = await fetch(url);
  } catch (e) {
    throw new ModelFileError(`cannot fetch ${what} ${url}: ${(e as Error).message}`, url, 'UNREADABLE');
  }
  if (response.status === 404) return null;
  if (!response.ok) throw new ModelFileError(`cannot fetch ${what} ${url}: HTTP ${response.status}`, url, 'UNREADABLE');
  return new Uint8Array(await response.arrayBuffer());
}

export const CapsNet = {
  devices: WEB_PROVIDERS.map((p) => p.device),
  autoOrder: WEB_AUTO_ORDER,

  /** Load model.onnx (URL or bytes); its decoder from options.decoder or `<model>.decoder.onnx` beside it. */
  async load(urlOrBytes: string | Uint8Array | ArrayBuffer, options: WebLoadOptions = {}): Promise<Classifier> {
    const threads = threadCount(options.threads);
    // Process-wide onnxruntime-web settings; they take effect at its first session.
    if (threads) ort.env.wasm.numThreads = threads;
    if (options.wasmPaths) ort.env.wasm.wasmPaths = options.wasmPaths;
    let bytes: Uint8Array;
    if (typeof urlOrBytes === 'string') {
      const fetched = await fetchBytes(urlOrBytes, 'model');
      if (!fetched)
        throw new ModelFileError(
          `model file ${urlOrBytes} was not found (HTTP 404): check the URL, or export one with \`capsnet export\``,
          urlOrBytes,
          'NOT_FOUND',
        );
      bytes = fetched;
    } else bytes = toModelBytes(urlOrBytes, 'the model');
    let decoder: DecoderSource;
    if (options.decoder !== undefined && typeof options.decoder !== 'string') decoder = toModelBytes(options.decoder, 'options.decoder');
    else {
      const url = typeof options.decoder === 'string' ? options.decoder : typeof urlOrBytes === 'string' ? decoderUrlFor(urlOrBytes) : null;
      decoder = async () => {
        if (!url) return { missing: 'the model was loaded from bytes: pass { decoder: bytes or URL } to CapsNet.load' };
        const fetched = await fetchBytes(url, 'decoder');
        if (!fetched && typeof options.decoder === 'string')
          throw new ModelFileError(`decoder file ${url} was not found (HTTP 404): check the URL`, url, 'NOT_FOUND');
        return fetched ?? { missing: `${url} was not found (\`capsnet export\` writes it beside the model)`, path: url };
      };
    }
    return loadClassifier(
      ort as unknown as OrtApi,
      bytes,
      typeof urlOrBytes === 'string' ? urlOrBytes : 'the model',
      decoder,
      WEB_PROVIDERS,
      WEB_AUTO_ORDER,
      options,
      '@capsnet-onnx/runtime/web (onnxruntime-web)',
    );
  },

  async probe(): Promise<Record<string, string | null>> {
    const out: Record<string, string | null> = {};
    for (const p of WEB_PROVIDERS) out[p.device] = await p.unavailable();
    return out;
  },
};

export default CapsNet;
