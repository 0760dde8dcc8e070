/**
 * What every provider file exports: one device, one execution provider, and the reasons it may not run here.
 * The registry (runtime/registry.ts) picks one; the classifier (runtime/classifier.ts) runs whichever it got.
 */
import type { InferenceSession } from 'onnxruntime-common';
import type { DeviceName, LoadOptions } from '../contract.ts';
import { DEVICE_TABLE, type DeviceRow, RUNTIME_PACKAGES } from '../devices.ts';

/**
 * How a provider runs the half-precision ops of an fp16-compute export (`capsnet.compute_precision` fp16):
 * - native: fp16 kernels (CUDA);
 * - widened: ONNX Runtime runs each op it has no fp16 kernel for in float32 behind Casts it inserts (and, at its
 *   full optimisation level, drops the Cast pairs between such ops): float32 maths on fp16 weights (CPU, wasm);
 * - adapter: native when the GPU adapter has WebGPU's shader-f16 feature; without it the file cannot run (WebGPU).
 */
export type Fp16Compute = 'native' | 'widened' | 'adapter';

export interface Provider {
  readonly device: DeviceName;
  /** The ONNX Runtime package behind it: `onnxruntime-node` or `onnxruntime-web`. */
  readonly runtime: 'onnxruntime-node' | 'onnxruntime-web';
  /** Its row in the device table (devices.ts). */
  readonly row: DeviceRow;
  /** Why this provider cannot run here and how to get it; null when it can be tried. */
  unavailable(): Promise<string | null>;
  /** For `auto` only: a reason to pass over a provider that works but should not be picked unasked. */
  autoSkip?(): Promise<string | null>;
  /** How it runs fp16 compute (see Fp16Compute). */
  readonly fp16Compute: Fp16Compute;
  /**
   * For fp16Compute 'adapter': why this adapter cannot compute in fp16, when that is known before a run (the
   * browser lists the adapter's features); null when it can or when only a run can tell.
   */
  fp16Unsupported?(): Promise<string | null>;
  /** Session options naming this provider's single execution provider, so nothing else can stand in for it. */
  sessionOptions(options: LoadOptions): InferenceSession.SessionOptions;
  /** A session-creation failure, explained with the fix. */
  explainFailure(error: unknown): string;
}

/** What a provider file writes; its name, runtime and fp16 mode come from its row in the device table. */
export type ProviderImpl = Omit<Provider, 'device' | 'runtime' | 'row' | 'fp16Compute'>;

/**
 * The provider of device-table row `file` (its `provider` field, the file's own name): the row's name, runtime and
 * fp16 mode joined to the implementation. A file without a row is a programming error, thrown at import.
 */
export function defineProvider(file: string, impl: ProviderImpl, rows: readonly DeviceRow[] = DEVICE_TABLE): Provider {
  const row = rows.find((r) => r.provider === file);
  if (!row) throw new Error(`providers/${file}.ts has no row in the device table (packages/runtime/src/devices.ts): add one`);
  return { ...impl, device: row.name as DeviceName, runtime: RUNTIME_PACKAGES[row.runtime].ort, fp16Compute: row.fp16, row };
}

export function errorMessage(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  // ORT's native messages start with a source path, a line number and a C++ signature; keep what a user can act on.
  const flat = message.replace(/\s+/g, ' ').trim();
  const check = flat.match(/^\/onnxruntime_src\/.* was false\. (.*)$/);
  return check ? check[1]! : flat.replace(/^\/onnxruntime_src\/\S+ /, '');
}

/** ORT-WebGPU's run-time message for a shader that needs f16 on an adapter without shader-f16. */
const NO_SHADER_F16 = /requires f16 but the device does not support it|shader-f16/i;

/** The one-line reason a device cannot run an fp16-compute model, with the fixes; `why`: what it lacks. */
export function fp16ComputeUnavailable(device: DeviceName, model: string, why: string): string {
  return (
    `device "${device}" cannot run ${model}: the model computes in fp16 (capsnet.compute_precision) and ${why}: ` +
    're-export it with `capsnet export RUN_DIR --precision fp16 --compute fp32` (fp16 weights, float32 maths), or load it on another device'
  );
}

/** True when a run failed because the WebGPU adapter has no shader-f16 feature. */
export function isMissingShaderF16(error: unknown): boolean {
  return NO_SHADER_F16.test(errorMessage(error));
}

export function threadCount(threads: number | undefined): number | undefined {
  if (threads === undefined) return undefined;
  if (!Number.isInteger(threads) || threads < 1) throw new RangeError(`threads must be a positive integer, got ${threads}`);
  return threads;
}

/** Session options for a GPU provider's one execution provider, strict about CPU fallback when asked. */
export function gpuSessionOptions(ep: InferenceSession.ExecutionProviderConfig, options: LoadOptions): InferenceSession.SessionOptions {
  return {
    executionProviders: [ep],
    graphOptimizationLevel: 'all',
    ...(options.noCpuFallback ? { extra: { session: { disable_cpu_ep_fallback: '1' } } } : {}),
  };
}

/** The message ORT gives when noCpuFallback refused a partial placement, explained. */
function explainCpuFallback(message: string): string | null {
  return /fallback to CPU EP has been explicitly disabled/i.test(message)
    ? `${message} (noCpuFallback: some nodes of this model are not supported by this provider and would ` +
        'run on the CPU; load without noCpuFallback to allow that)'
    : null;
}

/** A GPU provider's session-creation failure: a noCpuFallback refusal explained, any other message passed to `explain`. */
export function explainGpuFailure(error: unknown, explain: (message: string) => string = (message) => message): string {
  const message = errorMessage(error);
  return explainCpuFallback(message) ?? explain(message);
}

/** The WebGPU execution provider's session options, the same for onnxruntime-node and onnxruntime-web. */
export function webGpuSessionOptions(options: LoadOptions): InferenceSession.SessionOptions {
  return gpuSessionOptions({ name: 'webgpu' }, options);
}
