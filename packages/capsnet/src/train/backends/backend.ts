// Picks and initializes the TensorFlow.js backend used for training.
//
//   tensorflow  @tensorflow/tfjs-node-gpu (when importable) or @tensorflow/tfjs-node: native libtensorflow.
//               Optional dependencies whose install downloads libtensorflow, so they are often absent;
//               imported dynamically so this module loads without them.
//   webgpu      @tensorflow/tfjs-backend-webgpu on Dawn through the `webgpu` npm package.
//   wasm        @tensorflow/tfjs-backend-wasm (XNNPACK, SIMD) plus train/backends/wasm-kernels.ts (conv gradients),
//               multi-threaded through train/backends/wasm-threads.ts when more than one core is available; its
//               convolutions run on onnxruntime-node's CPU provider (train/backends/ort-conv.ts) unless
//               CAPSNET_CONVOLUTIONS=wasm or that fails to load (then said in the log).
//   cpu         @tensorflow/tfjs-backend-cpu, plain JS: a last resort.
//
// 'auto' tries tfjs-node-gpu (only when a GPU is visible), tfjs-node, wasm, cpu, and logs why it skipped each.

import fs from 'node:fs';
import os from 'node:os';
import * as tf from '@tensorflow/tfjs-core';

import { envFlag, readEnv } from '../../env/env.ts';
import { type BackendName, CONVOLUTIONS_NAMES, type ConvolutionsName } from '../names.ts';

export type { BackendName } from '../names.ts';

export interface InitializedBackend {
  name: BackendName;
  /** One line: which package/binary and how it is configured. */
  detail: string;
  tf: typeof import('@tensorflow/tfjs-core');
}

type Log = (msg: string) => void;

/** An expected, explainable failure: its message is the whole story (no stack needed). */
export class BackendUnavailableError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'BackendUnavailableError';
  }
}

const NATIVE_FIX =
  'npm install @tensorflow/tfjs-node (or @tensorflow/tfjs-node-gpu for CUDA) on a machine that ' + 'can download libtensorflow from storage.googleapis.com';

function errorText(e: unknown): string {
  const msg = e instanceof Error ? e.message : String(e);
  return msg.split('\n')[0]!.trim();
}

function isModuleNotFound(e: unknown, pkg: string): boolean {
  const err = e as { code?: string; message?: string };
  return (err?.code === 'ERR_MODULE_NOT_FOUND' || err?.code === 'MODULE_NOT_FOUND') && String(err.message ?? '').includes(pkg);
}

/** Why a native package cannot be used, in one line; null if it imported. */
async function importNative(pkg: NativePackage): Promise<string | null> {
  try {
    const specifier: string = pkg; // not a literal, so tsc does not look for the (optional) package's types
    await import(specifier);
    return null;
  } catch (e) {
    if (isModuleNotFound(e, pkg)) {
      return `${pkg} not installed: it is an optional dependency whose install needs libtensorflow from the internet`;
    }
    return `${pkg} is installed but failed to load (${errorText(e)}); reinstall it where libtensorflow can be downloaded`;
  }
}

/** Whether an NVIDIA GPU is visible to this process (driver loaded and a device node present). */
export function nvidiaGpuVisible(): boolean {
  try {
    if (fs.existsSync('/proc/driver/nvidia/gpus') && fs.readdirSync('/proc/driver/nvidia/gpus').length > 0) return true;
  } catch {
    /* not readable: fall through */
  }
  return fs.existsSync('/dev/nvidia0');
}

async function setBackendOrThrow(name: string, explain: string): Promise<void> {
  let ok = false;
  try {
    ok = await tf.setBackend(name);
  } catch (e) {
    throw new BackendUnavailableError(`${explain}: ${errorText(e)}`);
  }
  if (!ok || tf.getBackend() !== name) throw new BackendUnavailableError(`${explain}: tf.setBackend('${name}') failed`);
  await tf.ready();
}

type NativePackage = '@tensorflow/tfjs-node' | '@tensorflow/tfjs-node-gpu';

async function startTensorflow(pkg: NativePackage): Promise<InitializedBackend> {
  await setBackendOrThrow('tensorflow', `${pkg} imported but its backend did not start`);
  const where = pkg === '@tensorflow/tfjs-node-gpu' ? (nvidiaGpuVisible() ? 'CUDA GPU' : 'no GPU visible, so libtensorflow runs on the CPU') : 'CPU';
  return { name: 'tensorflow', detail: `${pkg} (libtensorflow, ${where})`, tf };
}

/** --backend tensorflow: the GPU package first if it imports, then the CPU one; else a clear error. */
async function initTensorflow(): Promise<InitializedBackend> {
  const reasons: string[] = [];
  const packages = ['@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node'] as const;
  for (const pkg of packages) {
    const why = await importNative(pkg);
    if (why == null) return startTensorflow(pkg);
    reasons.push(why);
  }
  // The usual case, both packages missing for the same reason, in one clause.
  const [gpu, cpu] = reasons.map((r, i) => r.slice(packages[i]!.length)) as [string, string];
  const why =
    gpu === cpu
      ? `${packages.join(' and ')}${gpu.replace('it is an optional dependency whose install needs', 'optional dependencies whose installs need')}`
      : reasons.join('; ');
  throw new BackendUnavailableError(`the 'tensorflow' backend is not available: ${why}. Fix: ${NATIVE_FIX}; or choose another backend (--backend wasm).`);
}

// ---------------------------------------------------------------------------------------------- wasm

/**
 * Threads for wasm: CAPSNET_WASM_THREADS if set, else the available cores (XNNPACK caps it at 8). More than 1
 * loads tfjs's threaded SIMD binary through train/backends/wasm-threads.ts; 1 loads the stock single-threaded SIMD one.
 */
export function wasmThreadsWanted(): number {
  const env = readEnv('CAPSNET_WASM_THREADS');
  if (env !== undefined) {
    if (!/^\s*\d+\s*$/.test(env) || Number(env) < 1) {
      throw new BackendUnavailableError(`CAPSNET_WASM_THREADS=${env} is not a thread count: set a whole number from 1 (e.g. 2), or unset it to use every core`);
    }
    return Math.min(Number(env), 8);
  }
  const cores = typeof os.availableParallelism === 'function' ? os.availableParallelism() : os.cpus().length;
  return Math.max(1, Math.min(cores, 8));
}

/**
 * The Emscripten runtime installs process-wide 'uncaughtException' / 'unhandledRejection' listeners that
 * rethrow, so any later crash prints a screenful of minified wasm glue instead of the real error. Drop the
 * listeners it added.
 */
async function withoutEmscriptenProcessHooks<T>(f: () => Promise<T>): Promise<T> {
  const before = {
    uncaughtException: new Set(process.listeners('uncaughtException')),
    unhandledRejection: new Set(process.listeners('unhandledRejection')),
  };
  try {
    return await f();
  } finally {
    for (const l of process.listeners('uncaughtException')) {
      if (!before.uncaughtException.has(l)) process.removeListener('uncaughtException', l);
    }
    for (const l of process.listeners('unhandledRejection')) {
      if (!before.unhandledRejection.has(l)) process.removeListener('unhandledRejection', l);
    }
  }
}

let wasmThreadsUsed: number | null = null;
/** Set when the threaded build failed to start once in this process, so later calls go straight to 1 thread. */
let threadedWasmFailed = false;

async function initWasm(log: Log): Promise<InitializedBackend> {
  await import('@tensorflow/tfjs-backend-wasm');
  const kernels = await import('./wasm-kernels.ts');
  kernels.registerWasmConvKernels();
  (await import('./wasm-capsule-kernels.ts')).registerWasmCapsuleKernels();
  (await import('./wasm-elementwise.ts')).registerWasmElementwiseKernels();
  const threads = await import('./wasm-threads.ts');

  if (tf.engine().registry.wasm == null) {
    // Not initialized yet in this process: choose single- or multi-threaded binary now.
    const want = wasmThreadsWanted();
    let restore: (() => void) | null = null;
    // CAPSNET_WASM_START_TIMEOUT_S bounds the threaded start (workers + compile); past it, 1 thread is used.
    const startTimeoutS = Number(readEnv('CAPSNET_WASM_START_TIMEOUT_S'));
    if (want > 1 && !threadedWasmFailed) restore = threads.useThreadedWasm(want, startTimeoutS * 1000);
    let ok = false;
    let failure = '';
    await withoutEmscriptenProcessHooks(async () => {
      const held: string[] = [];
      try {
        ok = await quietly(() => tf.setBackend('wasm'), held);
      } catch (e) {
        failure = errorText(e);
      }
      // tfjs reports a failed backend factory as console.warn('Initialization of backend wasm failed'), then the error.
      if (!ok && !failure)
        failure = held
          .filter((l) => !/^Initialization of backend/.test(l))
          .map((l) => l.split('\n')[0]!.replace(/^Error: /, ''))
          .join(' ');
    });
    if (!ok && restore != null) {
      log(`backend wasm: the ${want}-thread build did not start (${failure || 'setBackend failed'}); using the single-threaded SIMD build`);
      restore();
      restore = null;
      threadedWasmFailed = true;
      await withoutEmscriptenProcessHooks(async () => {
        ok = await tf.setBackend('wasm');
      });
    }
    if (!ok) throw new BackendUnavailableError(`The wasm backend failed to initialize${failure ? `: ${failure}` : ''}`);
    wasmThreadsUsed = threads.wasmThreadsCount();
  } else {
    await setBackendOrThrow('wasm', 'the wasm backend failed to initialize');
  }
  await tf.ready();
  // Ours, or onnxruntime's in front of them (train/backends/ort-conv.ts, from an earlier call in this process).
  if (!kernels.wasmConvKernelsRegistered() && !(await import('./ort-conv.ts')).ortConvolutionsActive()) {
    throw new Error('wasm conv gradient kernels are not registered');
  }
  const n = wasmThreadsUsed ?? threads.wasmThreadsCount();
  const convolutions = await placeConvolutions(n, log);
  return {
    name: 'wasm',
    detail:
      `@tensorflow/tfjs-backend-wasm, XNNPACK SIMD, ${n} thread${n === 1 ? '' : 's'}, ${convolutions}, ` +
      'fused capsule kernels in wasm SIMD (train/backends/wasm-capsule-kernels.ts)',
    tf,
  };
}

/** CAPSNET_CONVOLUTIONS, checked: who runs the wasm backend's convolutions. */
export function convolutionsWanted(): ConvolutionsName {
  const wanted = readEnv('CAPSNET_CONVOLUTIONS');
  if (!CONVOLUTIONS_NAMES.includes(wanted as ConvolutionsName)) {
    throw new BackendUnavailableError(
      `CAPSNET_CONVOLUTIONS=${wanted} is not one of ${CONVOLUTIONS_NAMES.join(', ')}: set one of them, or unset it for the default (onnxruntime)`,
    );
  }
  return wanted as ConvolutionsName;
}

/**
 * CAPSNET_CONVOLUTIONS=onnxruntime (the default): the wasm backend's convolutions move to onnxruntime-node
 * (train/backends/ort-conv.ts); they stay in wasm when asked to, or when onnxruntime-node's binding did not load
 * (said in the log; training goes on with the wasm kernels). Returns where they run, for the backend's detail line.
 */
async function placeConvolutions(threads: number, log: Log): Promise<string> {
  const inWasm = (why: string) => `convolutions in wasm SIMD (XNNPACK, gradients from train/backends/wasm-kernels.ts${why})`;
  if (convolutionsWanted() === 'wasm') return inWasm('; CAPSNET_CONVOLUTIONS=wasm');
  try {
    const { registerOrtConvolutions } = await import('./ort-conv.ts');
    registerOrtConvolutions(threads, log);
    return `convolutions on onnxruntime-node's CPU provider (${threads} thread${threads === 1 ? '' : 's'}, train/backends/ort-conv.ts)`;
  } catch (e) {
    log(`backend wasm: convolutions stay in wasm SIMD: onnxruntime-node's binding did not load (${errorText(e)})`);
    return inWasm('');
  }
}

/**
 * Runs f with console.warn held back (tfjs-core reports a failed backend factory there, stack and all, before
 * setBackend returns false); the held lines go to `held`, and are printed too when CAPSNET_DEBUG_BACKEND is set.
 */
async function quietly<T>(f: () => Promise<T>, held: string[] = []): Promise<T> {
  const warn = console.warn;
  console.warn = (...args: unknown[]) => {
    held.push(args.map((a) => (a instanceof Error ? a.message : String(a))).join(' '));
    if (envFlag('CAPSNET_DEBUG_BACKEND')) warn(...args);
  };
  try {
    return await f();
  } finally {
    console.warn = warn;
  }
}

// -------------------------------------------------------------------------------------------- webgpu

function vulkanHint(): string {
  if (process.platform !== 'linux') return '';
  const loaderDirs = [
    '/usr/lib/x86_64-linux-gnu',
    '/usr/lib/aarch64-linux-gnu',
    '/usr/lib64',
    '/usr/lib',
    ...(process.env.LD_LIBRARY_PATH ?? '').split(':').filter(Boolean),
  ];
  const hasLoader = loaderDirs.some((d) => fs.existsSync(`${d}/libvulkan.so.1`));
  const chromium = '/usr/lib/chromium';
  const swiftshader = fs.existsSync(`${chromium}/vk_swiftshader_icd.json`);
  const parts: string[] = [];
  if (!hasLoader) {
    parts.push(
      'the Vulkan loader libvulkan.so.1 is not on the library path (apt-get install libvulkan1' +
        (fs.existsSync(`${chromium}/libvulkan.so.1`) ? `, or start node with LD_LIBRARY_PATH=${chromium}` : '') +
        ')',
    );
  }
  if (swiftshader && process.env.VK_ICD_FILENAMES == null) {
    parts.push(`for a software GPU set VK_ICD_FILENAMES=${chromium}/vk_swiftshader_icd.json XDG_RUNTIME_DIR=/tmp`);
  }
  return parts.length > 0 ? ` Hints: ${parts.join('; ')}.` : '';
}

let webgpuNavigator: { gpu: unknown } | null = null;

async function initWebgpu(_log: Log): Promise<InitializedBackend> {
  let webgpu: { create: (options: string[]) => unknown; globals: object };
  try {
    webgpu = (await import('webgpu')) as unknown as typeof webgpu;
  } catch (e) {
    throw new BackendUnavailableError(`The 'webgpu' backend needs the \`webgpu\` npm package (Dawn): ${errorText(e)}`);
  }
  const g = globalThis as unknown as { navigator?: { gpu?: unknown } };
  if (g.navigator?.gpu == null) {
    // tfjs-backend-webgpu checks navigator.gpu when it is imported, so the shim must come first.
    Object.assign(globalThis, webgpu.globals);
    webgpuNavigator = { gpu: webgpu.create([]) };
    if (g.navigator == null) {
      Object.defineProperty(globalThis, 'navigator', { value: webgpuNavigator, configurable: true, writable: true });
    } else {
      Object.defineProperty(g.navigator, 'gpu', { value: webgpuNavigator.gpu, configurable: true, writable: true });
    }
  }
  const gpu = g.navigator!.gpu as {
    requestAdapter(): Promise<{ info?: { vendor?: string; architecture?: string; device?: string; description?: string } } | null>;
  };
  const adapter = await gpu.requestAdapter();
  if (adapter == null) {
    throw new BackendUnavailableError(`The 'webgpu' backend found no WebGPU adapter.${vulkanHint()}`);
  }
  await import('@tensorflow/tfjs-backend-webgpu');
  await quietly(() => setBackendOrThrow('webgpu', 'tfjs-backend-webgpu did not start'));
  const info = adapter.info ?? {};
  const name = [info.vendor, info.architecture, info.device, info.description].filter((s) => s).join(' ') || 'unnamed adapter';
  const software = /swiftshader|llvmpipe|lavapipe/i.test(name) || /swiftshader/i.test(process.env.VK_ICD_FILENAMES ?? '');
  return {
    name: 'webgpu',
    detail:
      `@tensorflow/tfjs-backend-webgpu on Dawn (${name}${software ? ', software rasterizer: very slow' : ''}); ` +
      'read tensors with await data(), not dataSync()',
    tf,
  };
}

/**
 * Drops the reference to Dawn's GPU object so that Node can exit (dawn.node keeps the event loop alive while
 * navigator.gpu is reachable). Call once training on webgpu is finished.
 */
export function releaseWebgpu(): void {
  if (webgpuNavigator == null) return;
  const g = globalThis as unknown as { navigator?: { gpu?: unknown } };
  if (g.navigator === webgpuNavigator) delete (globalThis as { navigator?: unknown }).navigator;
  else if (g.navigator != null && g.navigator.gpu === webgpuNavigator.gpu) delete g.navigator.gpu;
  webgpuNavigator = null;
}

// ----------------------------------------------------------------------------------------------- cpu

/**
 * Make tfjs's cpu backend the current one without its "install the node backend" banner: the banner is printed at
 * the backend's first tensor whenever IS_NODE, but here the cpu backend is a deliberate choice (a float32
 * reference, or `--backend cpu`), and the node backend cannot install without libtensorflow's download.
 */
export async function setCpuBackend(): Promise<void> {
  await import('@tensorflow/tfjs-backend-cpu');
  await setBackendOrThrow('cpu', 'the cpu backend failed to initialize');
  (tf.backend() as unknown as { firstUse: boolean }).firstUse = false;
}

async function initCpu(): Promise<InitializedBackend> {
  await setCpuBackend();
  // tfjs-backend-cpu's own Conv2DBackpropFilter makes one TensorBuffer.get() per multiply-add: tens of seconds a step.
  const { installFastConvFilterGrad } = await import('./cpu-kernels.ts');
  installFastConvFilterGrad('cpu');
  return { name: 'cpu', detail: '@tensorflow/tfjs-backend-cpu (plain JavaScript, slow), conv filter gradient from train/backends/cpu-kernels.ts', tf };
}

// ---------------------------------------------------------------------------------------------- main

/**
 * Initializes the requested backend (or the best available one for 'auto'), makes it tfjs's active
 * backend and waits for tf.ready(). Throws BackendUnavailableError with the cause and the fix when an
 * explicitly requested backend cannot run.
 */
export async function initBackend(requested: 'auto' | BackendName, log: Log = () => {}): Promise<InitializedBackend> {
  switch (requested) {
    case 'tensorflow':
      return initTensorflow();
    case 'webgpu':
      return initWebgpu(log);
    case 'wasm':
      return initWasm(log);
    case 'cpu':
      return initCpu();
    case 'auto':
      // Checked before the fallback chain: a bad CAPSNET_WASM_THREADS or CAPSNET_CONVOLUTIONS is the user's to fix,
      // not a reason to drop to the cpu backend.
      wasmThreadsWanted();
      convolutionsWanted();
      break;
    default:
      throw new Error(`unknown backend '${String(requested)}' (expected auto, tensorflow, webgpu, wasm or cpu)`);
  }

  const skipped: string[] = [];
  if (nvidiaGpuVisible()) {
    const why = await importNative('@tensorflow/tfjs-node-gpu');
    if (why == null) {
      const b = await startTensorflow('@tensorflow/tfjs-node-gpu');
      log('backend auto: chose tensorflow');
      return b;
    }
    skipped.push(why);
  } else {
    skipped.push('@tensorflow/tfjs-node-gpu skipped: no NVIDIA GPU visible');
  }
  const whyNode = await importNative('@tensorflow/tfjs-node');
  if (whyNode == null) {
    const b = await startTensorflow('@tensorflow/tfjs-node');
    for (const s of skipped) log(`backend auto: ${s}`);
    log('backend auto: chose tensorflow');
    return b;
  }
  skipped.push(whyNode);
  for (const s of skipped) log(`backend auto: ${s}`);
  try {
    const b = await initWasm(log);
    log('backend auto: chose wasm');
    return b;
  } catch (e) {
    log(`backend auto: wasm failed (${errorText(e)})`);
  }
  const b = await initCpu();
  log('backend auto: chose cpu');
  return b;
}
