// Multi-threaded tfjs wasm backend in Node.
//
// tfjs-backend-wasm 4.22 never uses its threaded binary in Node: the WASM_HAS_MULTITHREAD_SUPPORT flag
// returns false whenever IS_NODE (tfjs issue #3830). Forcing the flag on does not help either, because the
// package's init() hands Emscripten a `blob:` URL for the pthread worker script, and Node's worker_threads
// only accept file paths / file: or data: URLs (ERR_WORKER_PATH). The worker script that ships in
// wasm-out/*.worker.js is not the script itself but a CommonJS module exporting it as a string.
//
// So this module builds the threaded backend itself, with the package's own pieces:
//   - the Emscripten factory wasm-out/tfjs-backend-wasm-threaded-simd.js (loaded with require),
//   - its worker script, written once to a file in the OS temp dir (content-hashed name, atomic rename),
//   - locateFile returning that file and the .wasm next to the factory, mainScriptUrlOrBlob = the factory's path
//     (the worker importScripts() it by path),
//   - the package's exported BackendWasm class around the resulting module,
// and registers it as the 'wasm' backend factory in place of the stock one.
//
// One more detail: the C++ side sizes XNNPACK's thread pool as min(requested, emscripten_num_logical_cores()/2),
// where that core count is os.cpus().length in Node, read once while the module starts. On a 2-core machine
// that cap is 1 thread. While the factory runs, os.cpus is made to report 2x the wanted thread count, and is
// restored right after.

import { createHash } from 'node:crypto';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import * as tfwasm from '@tensorflow/tfjs-backend-wasm';

const require = createRequire(import.meta.url);
const THREADED = 'tfjs-backend-wasm-threaded-simd';

interface EmscriptenModule {
  cwrap(name: string, ret: string | null, args: string[]): (...a: number[]) => number;
  [key: string]: unknown;
}
type Factory = (config: Record<string, unknown>) => Promise<EmscriptenModule>;

function wasmOutDir(): string {
  return path.join(path.dirname(require.resolve('@tensorflow/tfjs-backend-wasm/package.json')), 'wasm-out');
}

/** Writes the pthread worker script to a file (once per content) and returns its path. */
function workerScriptFile(outDir: string): string {
  const exported = require(path.join(outDir, `${THREADED}.worker.js`)) as { wasmWorkerContents?: unknown };
  if (typeof exported.wasmWorkerContents !== 'string') {
    throw new Error(`${THREADED}.worker.js does not export wasmWorkerContents (tfjs-backend-wasm layout changed)`);
  }
  // The string came from a template literal, so the "\n" escapes inside its JS string literals are real
  // newlines now; escape them back (tfjs does the same before making its Blob).
  const source = exported.wasmWorkerContents.replace(/\n/g, '\\n');
  const hash = createHash('sha256').update(source).digest('hex').slice(0, 16);
  const file = path.join(os.tmpdir(), `capsnet-tfjs-wasm-worker-${hash}.cjs`);
  if (!fs.existsSync(file)) {
    const tmp = `${file}.${process.pid}.tmp`;
    fs.writeFileSync(tmp, source);
    fs.renameSync(tmp, file);
  }
  return file;
}

async function instantiateThreaded(threads: number): Promise<EmscriptenModule> {
  const outDir = wasmOutDir();
  const worker = workerScriptFile(outDir);
  const factory = require(path.join(outDir, `${THREADED}.js`)) as Factory;
  const realCpus = os.cpus;
  const padded = (): os.CpuInfo[] => {
    const cpus = realCpus();
    while (cpus.length > 0 && cpus.length < 2 * threads) cpus.push(cpus[0]!);
    return cpus;
  };
  os.cpus = padded;
  // Emscripten spawns its 8 pool workers with `new Worker(file)`, taken from require('worker_threads') while
  // the factory runs. Without options a worker inherits this process's execArgv (e.g. `--import tsx`), which
  // costs each of them a TypeScript loader they do not need: start them with a bare execArgv instead.
  const workerThreads = require('node:worker_threads') as { Worker: typeof import('node:worker_threads').Worker };
  const RealWorker = workerThreads.Worker;
  class BareWorker extends RealWorker {
    constructor(file: string | URL, options?: import('node:worker_threads').WorkerOptions) {
      super(file, { execArgv: [], ...options });
    }
  }
  workerThreads.Worker = BareWorker;
  let mod: EmscriptenModule;
  try {
    mod = await factory({
      locateFile: (file: string) => (file.endsWith('.worker.js') ? worker : path.join(outDir, file)),
      mainScriptUrlOrBlob: path.join(outDir, `${THREADED}.js`),
    });
  } finally {
    if (os.cpus === padded) os.cpus = realCpus;
    if (workerThreads.Worker === BareWorker) workerThreads.Worker = RealWorker;
  }
  // The JS <-> C++ bridge BackendWasm expects (the same cwraps tfjs's own init() sets up).
  mod.tfjs = {
    init: mod.cwrap('init', null, []),
    initWithThreadsCount: mod.cwrap('init_with_threads_count', null, ['number']),
    getThreadsCount: mod.cwrap('get_threads_count', 'number', []),
    registerTensor: mod.cwrap('register_tensor', null, ['number', 'number', 'number']),
    disposeData: mod.cwrap('dispose_data', null, ['number']),
    dispose: mod.cwrap('dispose', null, []),
  };
  return mod;
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not finish within ${ms / 1000} s`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

/**
 * Replaces the registered 'wasm' backend factory with one that loads the threaded SIMD binary with
 * `threads` XNNPACK threads. Returns a function that puts the stock (single-threaded in Node) factory back.
 * Call before tf.setBackend('wasm').
 */
export function useThreadedWasm(threads: number, timeoutMs = 60_000): () => void {
  const stock = tf.findBackendFactory('wasm');
  if (stock == null) throw new Error('the wasm backend is not registered (import @tensorflow/tfjs-backend-wasm first)');
  const priority = 2; // what tfjs-backend-wasm registers with
  tf.removeBackend('wasm');
  tfwasm.setThreadsCount(threads);
  tf.registerBackend(
    'wasm',
    async () => {
      const mod = await withTimeout(instantiateThreaded(threads), timeoutMs, 'starting the threaded wasm module');
      const BackendWasm = tfwasm.BackendWasm as unknown as new (m: EmscriptenModule) => tf.KernelBackend;
      const backend = new BackendWasm(mod); // starts XNNPACK's pool threads
      // Emscripten ref()s the worker of every running pthread so that Node waits for it; XNNPACK's pool
      // threads never end, so the process would never exit. They hold no state that needs flushing.
      const pthread = mod.PThread as { runningWorkers?: { unref?: () => void }[] } | undefined;
      for (const w of pthread?.runningWorkers ?? []) w.unref?.();
      return backend;
    },
    priority,
  );
  return () => {
    tf.removeBackend('wasm');
    tf.registerBackend('wasm', stock, priority);
  };
}

/** XNNPACK's thread count in the initialized wasm backend (1 for the stock Node setup). */
export function wasmThreadsCount(): number {
  return tfwasm.getThreadsCount();
}
