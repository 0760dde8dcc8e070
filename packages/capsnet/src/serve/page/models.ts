/**
 * The page's models: one queue for every model run, and loading a model on a device with its warm-up and its
 * routing session (routing.ts). app.ts keeps the loaded models and switches between them.
 */
import { CapsNet, type Classifier, type DeviceRequest, type ModelMetadata, describeAdapter, webGpuAdapterInfo } from '@capsnet-onnx/runtime/web';
import { RoutingSession } from './routing.ts';

let queue: Promise<unknown> = Promise.resolve();

/** Run model work (classify, decode, routing, release) one task at a time, in call order: onnxruntime-web runs one at a time. */
export function exclusive<T>(task: () => Promise<T>): Promise<T> {
  const next = queue.then(task, task);
  queue = next.catch(() => undefined);
  return next;
}

export const message = (e: unknown) => (e instanceof Error ? e.message : String(e));

export const deviceName = (model: Classifier) => (model.device === 'webgpu' ? 'WebGPU' : 'WASM');

/** "WASM · threaded", "WebGPU · <adapter>": what the badge shows for a loaded model. */
async function badgeText(model: Classifier): Promise<string> {
  let detail = '';
  if (model.device === 'wasm') detail = self.crossOriginIsolated ? ' · threaded' : ' · 1 thread';
  else if (model.device === 'webgpu') {
    const adapter = await webGpuAdapterInfo();
    if (adapter) detail = ` · ${describeAdapter(adapter)}`;
  }
  return `${deviceName(model)}${detail}`;
}

/** A model loaded for one device request, with its routing session (or why there is none) and its badge. */
export interface Loaded {
  model: Classifier;
  routing: RoutingSession | string;
  badge: string;
  /** Download, load and warm-up, in ms. */
  loadMs: number;
}

/** Load the model on `device`: its bytes from the server (revalidated by ETag), a warm-up run of each graph, the routing session. */
export async function loadModelOn(device: DeviceRequest, metadata: ModelMetadata): Promise<Loaded> {
  const started = performance.now();
  const response = await fetch('/model.onnx');
  if (!response.ok) throw new Error(`GET /model.onnx: HTTP ${response.status}`);
  const bytes = new Uint8Array(await response.arrayBuffer());
  const model = await CapsNet.load(bytes, { device, decoder: '/model.decoder.onnx', wasmPaths: '/ort/' });
  try {
    // One warm-up run of each graph (WebGPU compiles its shaders here), so the latencies shown are steady-state.
    const m = metadata;
    await exclusive(() => model.classify(new Float32Array(m.inputHeight * m.inputWidth * m.inputChannels)));
    await exclusive(() => model.decode(new Float32Array(m.numClasses * m.digitDim)));
    let routing: RoutingSession | string;
    try {
      routing = await exclusive(() => RoutingSession.open(model, m));
    } catch (e) {
      routing = `its coupling coefficients could not be computed (${message(e)})`;
    }
    return { model, routing, badge: await badgeText(model), loadMs: performance.now() - started };
  } catch (e) {
    void exclusive(() => model.dispose());
    throw e;
  }
}
