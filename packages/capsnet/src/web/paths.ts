/** Where the browser bundles live, without loading esbuild (serve reads them; build.ts writes them). */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ortWasmDir } from '@capsnet-onnx/runtime/wasm-assets';

/** The capsnet-onnx package's folder: src/web/ and dist/web/ are both two levels below it. */
export const PACKAGE_ROOT = fileURLToPath(new URL('../..', import.meta.url));
/** The page's and the parity harness's bundles, and onnxruntime-web's .wasm files. */
export const WEB_DIST = join(PACKAGE_ROOT, 'dist', 'web');
/** Written beside the bundles: the onnxruntime-web version whose JavaScript they embed. */
export const BUILD_INFO = 'build-info.json';

/** Running from TypeScript sources (this repository) rather than the installed, compiled package. */
const FROM_SOURCE = import.meta.url.endsWith('.ts');

export interface BuildInfo {
  /** Version of the onnxruntime-web whose JavaScript (loader and Emscripten glue) the bundles embed. */
  onnxruntimeWeb: string;
}

/**
 * onnxruntime-web as capsnet-onnx itself resolves it (not the app's copy, which may be another version): its dist/
 * folder and version. The browser bundles embed this package's JavaScript, and its .wasm must come from the same
 * version (a 1.30 loader cannot instantiate a 1.31 .wasm): capsnet-onnx depends on one exact version for that.
 */
export function ownOnnxruntimeWeb(): { dir: string; version: string } {
  let dir: string;
  try {
    // Its `exports` hide package.json: find its dist/ through a file it exports, as the runtime's helper does.
    dir = ortWasmDir(import.meta.url);
  } catch {
    throw new Error('onnxruntime-web is not installed beside capsnet-onnx: reinstall capsnet-onnx (it depends on onnxruntime-web)');
  }
  const { version } = JSON.parse(readFileSync(join(dir, '..', 'package.json'), 'utf8')) as { version: string };
  return { dir, version };
}

/** The onnxruntime-web version the bundles in `dir` were built with; undefined when unrecorded. */
function builtWith(dir: string): string | undefined {
  try {
    return (JSON.parse(readFileSync(join(dir, BUILD_INFO), 'utf8')) as BuildInfo).onnxruntimeWeb;
  } catch {
    return undefined;
  }
}

/**
 * The folder of the browser bundles, and onnxruntime-web's dist/ folder to serve their .wasm from. An installed
 * package ships them (built before `npm pack`) and never writes into its own folder; in the repository they are
 * built on demand (`rebuild`: even when present, so the parity harness matches the sources), and rebuilt when the
 * installed onnxruntime-web is not the one they were built with.
 *
 * Throws a one-line error when the installed package's bundles and the onnxruntime-web beside them differ in
 * version (an app's `overrides` can force that): the page would otherwise fail with a WebAssembly LinkError.
 */
export async function webBundles(rebuild: boolean): Promise<{ dir: string; ortDir: string }> {
  const ort = ownOnnxruntimeWeb();
  if (!FROM_SOURCE) {
    if (!existsSync(join(WEB_DIST, 'capsnet.js'))) {
      throw new Error(`the browser bundles are missing from ${WEB_DIST}: reinstall capsnet-onnx (its package ships them)`);
    }
    const built = builtWith(WEB_DIST);
    if (built !== ort.version) {
      throw new Error(
        `capsnet-onnx's browser bundles were built with onnxruntime-web ${built ?? '(unknown)'}, but onnxruntime-web ${ort.version} ` +
          `is installed beside it: install onnxruntime-web@${built} in your app, or remove the override that replaced it`,
      );
    }
    return { dir: WEB_DIST, ortDir: ort.dir };
  }
  if (rebuild || !existsSync(join(WEB_DIST, 'capsnet.js')) || builtWith(WEB_DIST) !== ort.version) {
    const { buildWeb } = await import('./build.ts');
    await buildWeb();
  }
  return { dir: WEB_DIST, ortDir: ort.dir };
}
