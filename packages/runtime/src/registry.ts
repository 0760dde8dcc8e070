/**
 * Device selection. A named device runs on its provider or fails with the provider's reason and fix: there is
 * no silent fallback. `auto` walks the entry point's order and reports which providers it passed over and why.
 */
import type { DeviceName, DeviceRequest } from './contract.ts';
import { DeviceUnavailableError, ModelFormatError } from '@capsnet-onnx/core';
import type { Provider } from './providers/provider.ts';

export interface Selected<T> {
  value: T;
  provider: Provider;
  report: string;
}

const DEVICES: readonly string[] = ['auto', 'cpu', 'cuda', 'webgpu', 'wasm'];

/**
 * Open `open(provider)` on the requested device. `providers` are this entry point's providers,
 * `autoOrder` the devices `auto` tries, best first.
 */
export async function selectProvider<T>(
  request: DeviceRequest,
  providers: readonly Provider[],
  autoOrder: readonly DeviceName[],
  open: (provider: Provider) => Promise<T>,
  log: (message: string) => void = () => {},
  entry = 'this runtime',
): Promise<Selected<T>> {
  if (!DEVICES.includes(request)) {
    throw new DeviceUnavailableError(`unknown device "${request}": use one of ${DEVICES.join(', ')}`);
  }
  if (request !== 'auto') {
    const provider = providers.find((p) => p.device === request);
    if (!provider) {
      throw new DeviceUnavailableError(
        `device "${request}" is not provided by ${entry} (it has ${providers.map((p) => p.device).join(', ')}): ` +
          (request === 'wasm'
            ? 'wasm is onnxruntime-web\'s CPU path: use @capsnet-onnx/runtime/web, or device "cpu" here'
            : request === 'cuda'
              ? 'CUDA runs only in Node: use @capsnet-onnx/runtime/node (onnxruntime-node)'
              : `use one of ${providers.map((p) => p.device).join(', ')}`),
      );
    }
    const reason = await provider.unavailable();
    if (reason) throw new DeviceUnavailableError(`device "${request}" is unavailable: ${reason}`);
    let value: T;
    try {
      value = await open(provider);
    } catch (e) {
      if (e instanceof DeviceUnavailableError || e instanceof ModelFormatError) throw e;
      throw new DeviceUnavailableError(`device "${request}" failed to start: ${provider.explainFailure(e)}`);
    }
    const report = `${request} (${provider.runtime})`;
    log(`device: ${report}`);
    return { value, provider, report };
  }
  const passed: string[] = [];
  for (const device of autoOrder) {
    const provider = providers.find((p) => p.device === device);
    if (!provider) continue;
    const reason = (await provider.unavailable()) ?? (await provider.autoSkip?.()) ?? null;
    if (reason) {
      passed.push(`${device}: ${reason}`);
      // The problem only (what comes before its fix): auto is not asked for this device, so its install advice is noise.
      log(`auto: passing over ${device}: ${reason.split(/: (?![^(]*\))/)[0]}`);
      continue;
    }
    try {
      const value = await open(provider);
      const report =
        `auto chose ${device} (${provider.runtime}; order ${autoOrder.join(' > ')})` +
        (passed.length ? `; passed over ${passed.map((p) => p.split(':')[0]).join(', ')}` : '');
      log(`device: ${report}`);
      return { value, provider, report };
    } catch (e) {
      if (e instanceof ModelFormatError) throw e;
      const why = provider.explainFailure(e);
      passed.push(`${device}: ${why}`);
      log(`auto: ${device} failed to start: ${why}`);
    }
  }
  throw new DeviceUnavailableError(`auto found no working device among ${autoOrder.join(', ')}:\n  ${passed.join('\n  ')}`);
}
