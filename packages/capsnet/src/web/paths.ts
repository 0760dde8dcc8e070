/** Where the browser bundles live, without loading esbuild (serve reads them; build.ts writes them). */
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The capsnet-onnx package's folder: src/web/ and dist/web/ are both two levels below it. */
export const PACKAGE_ROOT = fileURLToPath(new URL('../..', import.meta.url));
/** The page's and the parity harness's bundles, and onnxruntime-web's .wasm files. */
export const WEB_DIST = join(PACKAGE_ROOT, 'dist', 'web');
