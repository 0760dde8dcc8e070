/** Where the browser bundles live, without loading esbuild (serve reads them; build.ts writes them). */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The capsnet-onnx package's folder: src/web/ and dist/web/ are both two levels below it. */
export const PACKAGE_ROOT = fileURLToPath(new URL('../..', import.meta.url));
/** The page's and the parity harness's bundles, and onnxruntime-web's .wasm files. */
export const WEB_DIST = join(PACKAGE_ROOT, 'dist', 'web');

/** Running from TypeScript sources (this repository) rather than the installed, compiled package. */
const FROM_SOURCE = import.meta.url.endsWith('.ts');

/**
 * The folder of the browser bundles. An installed package ships them (built before `npm pack`) and never writes
 * into its own folder; in the repository they are built on demand (`rebuild`: even when present, so the parity
 * harness matches the sources).
 */
export async function webBundles(rebuild: boolean): Promise<string> {
  if (!FROM_SOURCE) {
    if (existsSync(join(WEB_DIST, 'capsnet.js'))) return WEB_DIST;
    throw new Error(`the browser bundles are missing from ${WEB_DIST}: reinstall capsnet-onnx (its package ships them)`);
  }
  if (rebuild || !existsSync(join(WEB_DIST, 'capsnet.js'))) {
    const { buildWeb } = await import('./build.ts');
    await buildWeb();
  }
  return WEB_DIST;
}
