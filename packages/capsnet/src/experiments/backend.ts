/**
 * Backend set-up for the experiments. Uses the project's `initBackend` (train/backend.ts) when it is there;
 * otherwise picks wasm (single-threaded, fast on CPU) and falls back to the plain cpu backend. Either way the
 * fast filter-gradient kernel from fastconv.ts covers a slow or missing Conv2DBackpropFilter.
 */
import { existsSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
// Gradient functions and the cpu backend (tfjs-core's Node bundle registers none).
import '@tensorflow/tfjs';
import { installFastConvFilterGrad } from './fastconv.ts';

export type BackendRequest = 'auto' | 'wasm' | 'cpu' | 'tensorflow' | 'webgpu';

// Beside this module: TypeScript in the repository, compiled JavaScript in the installed package.
const PROJECT_BACKEND = fileURLToPath(new URL(`../train/backend.${import.meta.url.endsWith('.ts') ? 'ts' : 'js'}`, import.meta.url));

let active: string | undefined;

export async function setupBackend(requested: BackendRequest, log: (line: string) => void = () => {}): Promise<string> {
  if (active && (requested === 'auto' || requested === active)) return active;
  let name: string | undefined;
  if (existsSync(PROJECT_BACKEND)) {
    try {
      const mod = (await import(pathToFileURL(PROJECT_BACKEND).href)) as { initBackend: (r: string, l?: (s: string) => void) => Promise<{ name: string }> };
      name = (await mod.initBackend(requested, log)).name;
    } catch (e) {
      log(`train/backend.ts could not set up "${requested}" (${(e as Error).message.split('\n')[0]}); using the experiments' own set-up`);
    }
  }
  if (!name) name = await ownBackend(requested, log);
  if (tf.getBackend() !== name) await tf.setBackend(name);
  await tf.ready();
  if (installFastConvFilterGrad(name)) log(`backend ${name}: using the experiments' fast Conv2DBackpropFilter kernel`);
  active = name;
  return name;
}

async function ownBackend(requested: BackendRequest, log: (line: string) => void): Promise<string> {
  if (requested === 'auto' || requested === 'wasm') {
    try {
      await import('@tensorflow/tfjs-backend-wasm');
      if (await tf.setBackend('wasm')) return 'wasm';
    } catch (e) {
      if (requested === 'wasm') throw new Error(`the wasm backend failed to start: ${(e as Error).message.split('\n')[0]}`);
    }
    log('wasm backend unavailable; using cpu');
  } else if (requested !== 'cpu') {
    throw new Error(`backend "${requested}" needs train/backend.ts (not present): use --backend auto, wasm or cpu`);
  }
  await tf.setBackend('cpu');
  return 'cpu';
}
