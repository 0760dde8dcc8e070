/**
 * Device selection. A named device runs on its provider or fails with the provider's reason and fix: there is
 * no silent fallback. `auto` walks the entry point's order and reports which providers it passed over and why.
 */
import type { DeviceRequest } from './contract.ts';
import { DeviceUnavailableError, ModelFormatError } from '@capsnet-onnx/core';
import { DEVICE_TABLE, type DeviceRow, RUNTIME_PACKAGES, deviceNames } from './devices.ts';
import type { Provider } from './providers/provider.ts';

export interface Selected<T> {
  value: T;
  provider: Provider;
  report: string;
}

/** A reason without its fix (what comes before the first ": " outside parentheses): auto was not asked for that device. */
function problemOnly(reason: string): string {
  return reason.split(/: (?![^(]*\))/)[0]!;
}

/** Why a device this entry lacks is elsewhere: the entry that has it, and this entry's device of the same kind. */
function elsewhere(request: string, providers: readonly Provider[], rows: readonly DeviceRow[]): string {
  const others = rows.filter((r) => r.name === request && !providers.some((p) => p.row === r));
  const instead = providers.find((p) => others.some((r) => r.processor === p.row.processor));
  const where = [...new Set(others.map((r) => RUNTIME_PACKAGES[r.runtime].entry))];
  return (
    `${request} runs on ${[...new Set(others.map((r) => RUNTIME_PACKAGES[r.runtime].ort))].join(' and ')} only: use ${where.join(' or ')}` +
    (instead ? `, or device "${instead.device}" here` : '')
  );
}

/**
 * Open `open(provider)` on the requested device. `providers` are this entry point's providers,
 * `autoOrder` the devices `auto` tries, best first; the others are listed in its report with the row's reason.
 */
export async function selectProvider<T>(
  request: DeviceRequest,
  providers: readonly Provider[],
  autoOrder: readonly string[],
  open: (provider: Provider) => Promise<T>,
  log: (message: string) => void = () => {},
  entry = 'this runtime',
  rows: readonly DeviceRow[] = DEVICE_TABLE,
): Promise<Selected<T>> {
  const devices = ['auto', ...deviceNames(rows)];
  if (!devices.includes(request)) {
    throw new DeviceUnavailableError(`unknown device "${request}": use one of ${devices.join(', ')}`);
  }
  if (request !== 'auto') {
    const provider = providers.find((p) => p.device === request);
    if (!provider) {
      throw new DeviceUnavailableError(
        `device "${request}" is not provided by ${entry} (it has ${providers.map((p) => p.device).join(', ')}): ${elsewhere(request, providers, rows)}`,
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
  // Each device auto passed over, with why: "cuda (skipped: no NVIDIA GPU driver found ...)".
  const passed: string[] = [];
  const failures: string[] = [];
  const notTried = providers
    .filter((p) => !autoOrder.includes(p.device) && typeof p.row.auto === 'string')
    .map((p) => `${p.device} (not tried: ${p.row.auto})`);
  for (const device of autoOrder) {
    const provider = providers.find((p) => p.device === device);
    if (!provider) continue;
    const reason = (await provider.unavailable()) ?? (await provider.autoSkip?.()) ?? null;
    if (reason) {
      failures.push(`${device}: ${reason}`);
      // The problem only: auto is not asked for this device, so its install advice is noise. Logged once, in the
      // report of the device chosen (a line here as well said the same thing twice on every run).
      passed.push(`${device} (skipped: ${problemOnly(reason)})`);
      continue;
    }
    try {
      const value = await open(provider);
      const over = [...passed, ...notTried];
      const chose = `auto chose ${device} (${provider.runtime}; order ${autoOrder.join(' > ')})`;
      const report = over.length ? `${chose}; passed over ${over.join(' and ')}` : chose;
      log(`device: ${report}`);
      return { value, provider, report };
    } catch (e) {
      if (e instanceof ModelFormatError) throw e;
      const why = provider.explainFailure(e);
      failures.push(`${device}: ${why}`);
      passed.push(`${device} (failed to start: ${problemOnly(why)})`);
      log(`auto: ${device} failed to start: ${why}`);
    }
  }
  throw new DeviceUnavailableError(`auto found no working device among ${autoOrder.join(', ')}:\n  ${failures.join('\n  ')}`);
}
