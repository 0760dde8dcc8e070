/**
 * What `capsnet parity` and `npm run bench:infer` run, derived from the runtime's device table
 * (packages/runtime/src/devices.ts): a new row there shows up here, in `capsnet parity --help` and in the bench's
 * list, with no other edit. Light on purpose (the table is data): the command line lists and checks these names
 * without loading the parity harness or ONNX Runtime.
 */
import { DEVICE_TABLE, type DeviceHost, type DeviceRow } from '@capsnet-onnx/runtime/internal';

/** One row of the parity matrix: a device of the table, run in a Node worker process or in headless Chromium. */
export interface ParityDevice {
  /** `<host>-<device>`: node-cpu, node-wasm, chromium-webgpu... */
  name: string;
  host: DeviceHost;
  row: DeviceRow;
  /** The runtime package, where it runs and the execution provider (`capsnet parity --help`). */
  description: string;
}

/** Each row in each place it runs: Node workers first, then Chromium, in table order. */
export function parityDevices(rows: readonly DeviceRow[] = DEVICE_TABLE): ParityDevice[] {
  const out: ParityDevice[] = [];
  for (const host of ['node', 'chromium'] as const) {
    for (const row of rows) {
      if (!row.hosts.includes(host)) continue;
      const where = host === 'chromium' ? ', in headless Chromium' : row.runtime === 'web' ? ', in Node' : '';
      out.push({ name: `${host}-${row.name}`, host, row, description: `${row.description}${where}` });
    }
  }
  return out;
}

/** The names `capsnet parity --devices` takes. */
export const PARITY_DEVICES: readonly string[] = parityDevices().map((d) => d.name);

/** One row of `npm run bench:infer`: a device of the table at a thread setting, or the tfjs forward pass. */
export interface BenchTarget {
  name: string;
  /** null: the tfjs forward pass (the reference). */
  row: DeviceRow | null;
  host: DeviceHost;
  /** CPU threads: a count, `per-core` (one per core) or undefined (ONNX Runtime's default). */
  threads?: number | 'per-core';
  /** The parity row that checks the same device, for the GPU check's table (null: none). */
  parity: string | null;
}

/**
 * The benchmark's rows. In Node: `ort-<runtime>-<device>`; CPU devices at fixed thread counts, since ONNX Runtime's
 * defaults differ (onnxruntime-node's CPU provider: 1 and 2 threads, `-1t` and `-2t`; onnxruntime-web's wasm:
 * its default, half the cores at most 4, and `-mt`, one per core). In the page (headless Chromium): `page-<device>`
 * for the CPU devices, at the same two wasm settings. Last, `tfjs`.
 */
export function benchTargets(rows: readonly DeviceRow[] = DEVICE_TABLE): BenchTarget[] {
  const out: BenchTarget[] = [];
  for (const row of rows.filter((r) => r.hosts.includes('node'))) {
    const base = `ort-${row.runtime}-${row.name}`;
    const parity = `node-${row.name}`;
    if (row.processor === 'cpu' && row.runtime === 'node') {
      out.push({ name: `${base}-1t`, row, host: 'node', threads: 1, parity }, { name: `${base}-2t`, row, host: 'node', threads: 2, parity });
    } else if (row.processor === 'cpu') {
      out.push({ name: base, row, host: 'node', parity }, { name: `${base}-mt`, row, host: 'node', threads: 'per-core', parity });
    } else out.push({ name: base, row, host: 'node', parity });
  }
  for (const row of rows.filter((r) => r.hosts.includes('chromium') && r.processor === 'cpu')) {
    out.push(
      { name: `page-${row.name}`, row, host: 'chromium', parity: null },
      { name: `page-${row.name}-mt`, row, host: 'chromium', threads: 'per-core', parity: null },
    );
  }
  out.push({ name: 'tfjs', row: null, host: 'node', parity: 'tfjs (reference)' });
  return out;
}
