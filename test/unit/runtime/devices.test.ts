/**
 * The device table (packages/runtime/src/devices.ts) is the one list of devices (issue 23, item 1): a provider
 * added as one row (and its file) shows up in `capsnet classify --help`, `capsnet serve`'s and `capsnet parity`'s
 * choices, parity's device list, bench:infer's rows and the runtime's selection, with no other edit; and no other
 * source file retypes a list of device names. In-process and fast: nothing here loads ONNX Runtime.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { type Command, CommanderError } from 'commander';
import { DEVICE_TABLE, type DeviceRow, autoOrder, defineProvider, deviceNames, nodeDeviceNames, nodeProviders } from '@capsnet-onnx/runtime/internal';
import { CapsNet as NodeCapsNet } from '@capsnet-onnx/runtime/node';
import { CapsNet as WebCapsNet } from '@capsnet-onnx/runtime/web';
import { selectProvider } from '../../../packages/runtime/src/registry.ts';
import { createProgram } from '../../../packages/capsnet/src/cli/program.ts';
import { PARITY_DEVICES, benchTargets, parityDevices } from '../../../packages/capsnet/src/parity/devices.ts';
import { BENCH_BACKENDS } from '../../../bench/infer.ts';
import { ROOT } from '../../support/fixtures.ts';

/** A provider that does not exist: a GPU execution provider of onnxruntime-node that auto never picks. */
const FAKE: DeviceRow = {
  name: 'fakeep',
  runtime: 'node',
  provider: 'node-fakeep',
  fp16: 'native',
  processor: 'gpu',
  hosts: ['node'],
  auto: 'a test device, never chosen unasked',
  install: 'nowhere: it is a test double',
  description: 'onnxruntime-node, fakeep execution provider (a test double)',
};
const ROWS: readonly DeviceRow[] = [...DEVICE_TABLE, FAKE];

/** The full help of `capsnet <name>` (what `--help` prints: the options and the text after them), unwrapped. */
function helpOf(program: Command, name: string): string {
  const command = program.commands.find((c) => c.name() === name)!;
  let text = '';
  command.configureOutput({ writeOut: (s) => (text += s), writeErr: (s) => (text += s), getOutHelpWidth: () => 1000 });
  command.exitOverride();
  try {
    command.outputHelp();
  } catch (e) {
    if (!(e instanceof CommanderError)) throw e;
  }
  return text;
}

/** Parse `args` with `program` (actions replaced, errors thrown): undefined when accepted, else the message. */
function parseError(program: Command, args: string[]): string | undefined {
  const quiet = (c: Command): void => {
    c.exitOverride().configureOutput({ writeErr: () => {}, writeOut: () => {}, outputError: () => {} });
    if (c.commands.length === 0) c.action(() => {});
    c.commands.forEach(quiet);
  };
  quiet(program);
  try {
    program.parse(args, { from: 'user' });
    return undefined;
  } catch (e) {
    if (!(e instanceof CommanderError)) throw e;
    return e.message;
  }
}

describe('device table', () => {
  test('a provider added as one row is in classify --help, serve and parity choices, parity and bench lists', () => {
    // Without the row, none of them has it.
    assert.ok(!helpOf(createProgram(), 'classify').includes('fakeep'));
    const program = createProgram(ROWS);
    assert.match(helpOf(program, 'classify'), /--device <name>[\s\S]*choices: "auto", "cpu", "cuda", "webgpu", "wasm", "fakeep"/);
    assert.match(helpOf(program, 'serve'), /"fakeep"/);
    const parityHelp = helpOf(program, 'parity');
    assert.match(parityHelp, /--devices <list> +comma-separated: node-cpu,node-cuda,node-webgpu,node-wasm,node-fakeep,chromium-wasm,chromium-webgpu/);
    assert.match(parityHelp, /\n {2}node-fakeep +onnxruntime-node, fakeep execution provider \(a test double\)\n/);
    // The parsers accept it where the table's own devices are accepted, and still refuse what is not in the table.
    assert.equal(parseError(createProgram(ROWS), ['classify', 'm.onnx', 'x.png', '--device', 'fakeep']), undefined);
    assert.equal(parseError(createProgram(ROWS), ['parity', 'm.onnx', '--devices', 'node-fakeep,node-cpu']), undefined);
    assert.match(parseError(createProgram(), ['classify', 'm.onnx', 'x.png', '--device', 'fakeep'])!, /argument 'fakeep' is invalid/);
    assert.match(
      parseError(createProgram(), ['parity', 'm.onnx', '--devices', 'node-fakeep'])!,
      /--devices takes comma-separated devices from .*; unknown: node-fakeep/,
    );

    assert.deepEqual(
      parityDevices(ROWS).map((d) => d.name),
      ['node-cpu', 'node-cuda', 'node-webgpu', 'node-wasm', 'node-fakeep', 'chromium-wasm', 'chromium-webgpu'],
    );
    const bench = benchTargets(ROWS);
    assert.deepEqual(
      bench.filter((t) => t.row === FAKE).map((t) => [t.name, t.parity, t.threads]),
      [['ort-node-fakeep', 'node-fakeep', undefined]],
    );
  });

  test("the lists built from today's table are the names the scripts, README and reports use", () => {
    assert.deepEqual([...PARITY_DEVICES], ['node-cpu', 'node-cuda', 'node-webgpu', 'node-wasm', 'chromium-wasm', 'chromium-webgpu']);
    assert.deepEqual(
      [...BENCH_BACKENDS],
      ['ort-node-cpu-1t', 'ort-node-cpu-2t', 'ort-node-cuda', 'ort-node-webgpu', 'ort-web-wasm', 'ort-web-wasm-mt', 'page-wasm', 'page-wasm-mt', 'tfjs'],
    );
    assert.deepEqual(deviceNames(), ['cpu', 'cuda', 'webgpu', 'wasm']);
    assert.deepEqual(nodeDeviceNames(), ['cpu', 'cuda', 'webgpu', 'wasm']);
    assert.deepEqual(NodeCapsNet.devices, ['cpu', 'cuda', 'webgpu']);
    assert.deepEqual(NodeCapsNet.autoOrder, autoOrder('node'));
    assert.deepEqual(WebCapsNet.devices, ['wasm', 'webgpu']);
    assert.deepEqual(WebCapsNet.autoOrder, ['webgpu', 'wasm']);
  });

  test("every row has its provider file, whose provider takes the row's name, runtime and fp16 mode", async () => {
    for (const row of DEVICE_TABLE) assert.ok(existsSync(join(ROOT, 'packages/runtime/src/providers', `${row.provider}.ts`)), row.provider);
    const node = await nodeProviders();
    assert.deepEqual(
      node.map((p) => [p.device, p.runtime, p.fp16Compute, p.row]),
      DEVICE_TABLE.filter((r) => r.runtime === 'node').map((r) => [r.name, 'onnxruntime-node', r.fp16, r]),
    );
    // A provider file without a row is refused at once, naming the table.
    assert.throws(
      () => defineProvider('node-missing', { unavailable: async () => null, sessionOptions: () => ({}), explainFailure: String }),
      /no row in the device table/,
    );
  });

  test("the runtime selects a new row's provider by name, and auto's report says why it passed it over", async () => {
    const opened: string[] = [];
    const fake = defineProvider(
      'node-fakeep',
      {
        unavailable: async () => null,
        sessionOptions: () => ({ executionProviders: [{ name: 'fakeep' }] }),
        explainFailure: String,
      },
      ROWS,
    );
    const cpu = defineProvider('node-cpu', { unavailable: async () => null, sessionOptions: () => ({}), explainFailure: String });
    const cuda = defineProvider('node-cuda', {
      unavailable: async () => 'no NVIDIA GPU driver found (/proc/driver/nvidia/version is missing): install one',
      sessionOptions: () => ({}),
      explainFailure: String,
    });
    const providers = [cpu, cuda, fake];
    const open = async (p: { device: string }) => opened.push(p.device);
    const named = await selectProvider('fakeep' as never, providers, autoOrder('node', ROWS), open, () => {}, 'test', ROWS);
    assert.equal(named.provider, fake);
    assert.equal(named.report, 'fakeep (onnxruntime-node)');
    const auto = await selectProvider('auto', providers, autoOrder('node', ROWS), open, () => {}, 'test', ROWS);
    assert.equal(auto.provider, cpu);
    assert.equal(
      auto.report,
      'auto chose cpu (onnxruntime-node; order cuda > cpu); passed over cuda (skipped: no NVIDIA GPU driver found (/proc/driver/nvidia/version is missing)) ' +
        'and fakeep (not tried: a test device, never chosen unasked)',
    );
    assert.deepEqual(opened, ['fakeep', 'cpu']);
    // Without the row, the name is unknown.
    await assert.rejects(
      selectProvider('fakeep' as never, providers, autoOrder('node'), open),
      /unknown device "fakeep": use one of auto, cpu, cuda, webgpu, wasm/,
    );
  });

  test('no source file outside the table retypes a list of device names', () => {
    const NAMES = '(?:cpu|cuda|webgpu|wasm)';
    // Two device names in a row ('cpu', 'cuda'), a parity device list, or a bench row list.
    const LIST = new RegExp(`'${NAMES}',\\s*'${NAMES}'|'(?:node|chromium)-${NAMES}',\\s*'(?:node|chromium)-|'(?:ort-node|ort-web|page)-[a-z0-9-]+',\\s*'`);
    const files = ['packages/runtime/src', 'packages/capsnet/src', 'bench'].flatMap((dir) =>
      readdirSync(join(ROOT, dir), { recursive: true, encoding: 'utf8' })
        .filter((f) => f.endsWith('.ts') && !f.includes('node_modules'))
        .map((f) => join(dir, f)),
    );
    // train/ holds TensorFlow.js's backends (tensorflow, webgpu, wasm, cpu), a vocabulary of its own.
    const offenders = files
      .filter((f) => !f.endsWith('runtime/src/devices.ts') && !f.includes('capsnet/src/train/'))
      .filter((f) => LIST.test(readFileSync(join(ROOT, f), 'utf8')));
    assert.deepEqual(offenders, []);
    assert.ok(files.length > 50, `${files.length} files searched`);
  });
});
