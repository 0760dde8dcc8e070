/** onnxruntime-node's providers, found through the device table (devices.ts). */
import { devicesOf } from './devices.ts';
import type { Provider } from './providers/provider.ts';

/** Sources run through tsx (`.ts`); the published package is compiled (`.js`). */
const EXT = import.meta.url.endsWith('.ts') ? '.ts' : '.js';
let providers: Promise<Provider[]> | undefined;

/**
 * onnxruntime-node's providers: one per `node` row of the device table, each imported from its file in providers/ at
 * first use (so that a row and its file are all a new provider needs).
 */
export function nodeProviders(): Promise<Provider[]> {
  providers ??= Promise.all(
    devicesOf('node').map(async (row) => {
      const module = (await import(new URL(`./providers/${row.provider}${EXT}`, import.meta.url).href)) as { default?: Provider };
      if (module.default?.row !== row) throw new Error(`providers/${row.provider}${EXT} must export default defineProvider('${row.provider}', ...)`);
      return module.default;
    }),
  );
  return providers;
}
