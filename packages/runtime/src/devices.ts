/**
 * The device table: one row per ONNX Runtime execution provider this runtime drives. Everything that lists devices
 * reads it: `DeviceName`, the entry points' provider lists and `auto` orders, the registry's checks and messages,
 * the `capsnet` command's `--device` choices, `capsnet parity`'s device list, `npm run bench:infer`'s rows and the
 * GPU check's table.
 *
 * Adding a provider: its file in providers/ (default export: `defineProvider(row name, ...)`) and its row here.
 * A Node provider needs nothing else (the Node entry imports its providers by file name); a browser provider is
 * also imported by name in web.ts, because browser bundlers follow static imports only.
 *
 * Data only, no imports of provider code: the command line reads it without loading ONNX Runtime, and the browser
 * entry reads it without pulling Node's providers into a bundle.
 */
import type { Fp16Compute } from './providers/provider.ts';

/** Which onnxruntime package runs the row: `node` is onnxruntime-node (`@capsnet-onnx/runtime/node`), `web` onnxruntime-web. */
export type DeviceRuntime = 'node' | 'web';
/** Where the row's provider can run: a Node process, or a page in (headless) Chromium. */
export type DeviceHost = 'node' | 'chromium';

export interface DeviceRow {
  /** The `device` option's value (ONNX Runtime's execution provider name). Two runtimes may share one (webgpu). */
  readonly name: string;
  readonly runtime: DeviceRuntime;
  /** The provider's file in packages/runtime/src/providers/, without its extension. */
  readonly provider: string;
  /** How it runs an fp16-compute export's half-precision ops (see Fp16Compute). */
  readonly fp16: Fp16Compute;
  /** Whether the provider computes on the CPU or a GPU (a GPU provider is held to no CPU fallback by parity). */
  readonly processor: 'cpu' | 'gpu';
  /** Where it can run; onnxruntime-web's wasm also runs in Node. */
  readonly hosts: readonly DeviceHost[];
  /**
   * Its place in `auto`'s order among its runtime's rows (1 first), or why `auto` never picks it (then it runs only
   * when asked for by name); `auto`'s report gives that reason.
   */
  readonly auto: number | string;
  /** How to get it where it is missing. */
  readonly install: string;
  /** One line for help texts: what runs it. */
  readonly description: string;
}

/** onnxruntime-node's installer fetches its CUDA provider (it reads ONNXRUNTIME_NODE_INSTALL); run in the app's folder. */
export const CUDA_INSTALL_COMMAND = 'ONNXRUNTIME_NODE_INSTALL=cuda12 npm rebuild onnxruntime-node';

export const DEVICE_TABLE = [
  {
    name: 'cpu',
    runtime: 'node',
    provider: 'node-cpu',
    // ORT's CPU provider has fp16 kernels for few ops on x86 (its InsertCastTransformer widens the rest).
    fp16: 'widened',
    processor: 'cpu',
    hosts: ['node'],
    auto: 2,
    install: 'part of onnxruntime-node: `ONNXRUNTIME_NODE_INSTALL=skip npm install onnxruntime-node`',
    description: 'onnxruntime-node, cpu execution provider',
  },
  {
    name: 'cuda',
    runtime: 'node',
    provider: 'node-cuda',
    fp16: 'native',
    processor: 'gpu',
    hosts: ['node'],
    auto: 1,
    install: `on a machine with an NVIDIA GPU (driver, CUDA 12, cuDNN 9) run \`${CUDA_INSTALL_COMMAND}\` in your app`,
    description: 'onnxruntime-node, cuda execution provider',
  },
  {
    name: 'webgpu',
    runtime: 'node',
    provider: 'node-webgpu',
    // ORT does not expose Dawn's adapter to JavaScript: only a run tells whether it has shader-f16.
    fp16: 'adapter',
    processor: 'gpu',
    hosts: ['node'],
    // Dawn picks the adapter without saying which, and without a GPU it is a software one (SwiftShader), far slower
    // than cpu. Short: auto's report, printed on every classify and serve, carries it.
    auto: 'may be a software GPU; ask for device "webgpu"',
    install: "part of onnxruntime-node on linux/x64, win32/x64 and macOS; needs Vulkan (Linux), D3D12 (Windows) or Metal (macOS) and a GPU's driver",
    description: 'onnxruntime-node, webgpu execution provider (Dawn over Vulkan; SwiftShader where there is no GPU)',
  },
  {
    name: 'wasm',
    runtime: 'web',
    provider: 'web-wasm',
    // The wasm build is ORT's CPU provider: ops without fp16 kernels are widened to float32 by ORT.
    fp16: 'widened',
    processor: 'cpu',
    hosts: ['node', 'chromium'],
    auto: 2,
    install: 'part of onnxruntime-web (`npm install onnxruntime-web`); a page serves its .wasm (see wasmPaths)',
    description: 'onnxruntime-web, wasm execution provider',
  },
  {
    name: 'webgpu',
    runtime: 'web',
    provider: 'web-webgpu',
    fp16: 'adapter',
    processor: 'gpu',
    hosts: ['chromium'],
    auto: 1,
    install: 'part of onnxruntime-web, in a browser with WebGPU (Chrome or Edge 113+) on an https or localhost page',
    description: 'onnxruntime-web, webgpu execution provider',
  },
] as const satisfies readonly DeviceRow[];

/** A device's name, as `CapsNet.load(model, { device })` takes it. */
export type DeviceName = (typeof DEVICE_TABLE)[number]['name'];
export type DeviceRequest = DeviceName | 'auto';

/** The runtime package behind each runtime, and the entry point that loads it. */
export const RUNTIME_PACKAGES: Record<DeviceRuntime, { ort: 'onnxruntime-node' | 'onnxruntime-web'; entry: string }> = {
  node: { ort: 'onnxruntime-node', entry: '@capsnet-onnx/runtime/node' },
  web: { ort: 'onnxruntime-web', entry: '@capsnet-onnx/runtime/web' },
};

/** Every device name once, in table order. */
export function deviceNames(rows: readonly DeviceRow[] = DEVICE_TABLE): string[] {
  return [...new Set(rows.map((r) => r.name))];
}

/** A runtime's rows, in table order. */
export function devicesOf(runtime: DeviceRuntime, rows: readonly DeviceRow[] = DEVICE_TABLE): DeviceRow[] {
  return rows.filter((r) => r.runtime === runtime);
}

/** The devices `auto` tries on a runtime, best first. */
export function autoOrder(runtime: DeviceRuntime, rows: readonly DeviceRow[] = DEVICE_TABLE): string[] {
  return devicesOf(runtime, rows)
    .filter((r): r is DeviceRow & { auto: number } => typeof r.auto === 'number')
    .sort((a, b) => a.auto - b.auto)
    .map((r) => r.name);
}

/**
 * The row that runs device `name` in a Node process: onnxruntime-node's when it has one, else an onnxruntime-web row
 * that runs in Node (wasm). Undefined for a device Node cannot run.
 */
export function nodeDevice(name: string, rows: readonly DeviceRow[] = DEVICE_TABLE): DeviceRow | undefined {
  return rows.find((r) => r.name === name && r.runtime === 'node') ?? rows.find((r) => r.name === name && r.hosts.includes('node'));
}

/** The devices a Node process can run (the command line's `--device` choices, after `auto`). */
export function nodeDeviceNames(rows: readonly DeviceRow[] = DEVICE_TABLE): string[] {
  return deviceNames(rows.filter((r) => r.hosts.includes('node')));
}
