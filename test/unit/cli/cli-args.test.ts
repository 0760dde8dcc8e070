/**
 * Every number on the command line is parsed once, strictly, by type (issue 20, item 4; cli/args.ts). The table is
 * built from the commands themselves: every option of every `capsnet` command that takes a value is either parsed
 * by a cli/args.ts parser (then fed `abc`, `1e3`, `-5`, `0x10`, `1.5`, an empty string and values past its range,
 * each of which must be a one-line usage error naming the flag and its range), offers choices, or is one of the
 * text options listed below. The table runs in-process through commander (fast: everything fails at parse time);
 * one case per command then runs through the real `capsnet` binary for the exit status and the absence of a stack.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { type Command, CommanderError, type Option } from 'commander';
import { execa } from 'execa';
import { type NumericRule, numericRule } from '../../../packages/capsnet/src/cli/args.ts';
import { createProgram } from '../../../packages/capsnet/src/cli/program.ts';
import { train } from '../../../packages/capsnet/src/train/trainer.ts';
import { CLI, ROOT } from '../../support/fixtures.ts';

/** Options that take free text (paths, names, addresses, specs) or lists checked by their own parser. */
const TEXT_OPTIONS = new Set([
  'train --data',
  'train --out',
  'serve --host',
  'serve --decoder',
  'serve --data',
  'serve --model-name',
  'serve --allowed-host',
  'serve --cors',
  'serve --dimensions',
  'export --out',
  'plot --out',
  'export --triton',
  'export --triton-name',
  'ensemble --out',
  'parity --checkpoint',
  'parity --devices',
  'parity --backends',
  'parity --require',
  'parity --json',
  ...['perturb', 'affine', 'mnist-table', 'multimnist', 'routing', 'all'].flatMap((e) => [`experiment ${e} --out`, `experiment ${e} --data`]),
  'experiment perturb --run',
  'experiment perturb --model',
  'experiment affine --affnist-dir',
]);

/** Positional arguments that let each command's options be parsed. */
const POSITIONALS: Record<string, string[]> = {
  serve: ['model.onnx'],
  export: ['run'],
  ensemble: ['a', 'b'],
  inspect: ['m.onnx'],
  classify: ['model.onnx', 'x.png'],
  parity: ['model.onnx'],
  'corpus write': ['dir'],
  'corpus score': [],
  'experiment report': ['dir'],
};

interface Flag {
  path: string[];
  option: Option;
  rule?: NumericRule;
}

function walk(command: Command, path: string[] = []): Flag[] {
  const own = command.options.map((option) => ({ path, option, rule: numericRule(option.parseArg) }));
  return [...(path.length ? own : []), ...command.commands.flatMap((c) => walk(c, [...path, c.name()]))];
}

/** Parse `args` with a fresh program whose commands throw instead of exiting; the error text, or undefined. */
function parseError(args: string[]): { message: string; exitCode: number } | undefined {
  const program = createProgram();
  const quiet = (c: Command): void => {
    c.exitOverride().configureOutput({ writeErr: () => {}, writeOut: () => {}, outputError: () => {} });
    // Only parsing is under test: no action runs.
    if (c.commands.length === 0) c.action(() => {});
    c.commands.forEach(quiet);
  };
  quiet(program);
  try {
    program.parse(args, { from: 'user' });
    return undefined;
  } catch (e) {
    if (!(e instanceof CommanderError)) throw e;
    return { message: e.message, exitCode: e.exitCode };
  }
}

/** Values that are not of the rule's type, or lie outside its range. */
function badValues(rule: NumericRule): string[] {
  const common = ['abc', '-5', '0x10', '', ' 7', 'NaN', 'Infinity'];
  const past = (n: number) => (Number.isSafeInteger(n) ? String(BigInt(n) + 1n) : '1e400');
  switch (rule.kind) {
    case 'integer':
    case 'integer list':
      return [
        ...common,
        '1e3',
        '1.5',
        '+3',
        past(rule.max),
        '99999999999999999999',
        ...(rule.min > 0 ? [String(rule.min - 1)] : []),
        ...(rule.kind === 'integer list' ? ['1,,2', '1,x'] : []),
      ];
    case 'bytes':
      return [...common, '1e3', '1.5', String(rule.min - 1), past(rule.max), '9999999gb'];
    case 'time':
      return [...common, '1e3', '5 m', '5x', '-5m', '1.5.3s', String(rule.max + 1), '9999999h'];
    case 'number':
      return [
        ...common,
        '1e400',
        '--3',
        rule.max === Number.MAX_VALUE ? '1e309' : rule.maxInclusive ? String(rule.max * 1.5 + 1) : String(rule.max),
        ...(rule.minInclusive ? [] : [String(rule.min)]),
      ];
  }
}

/** Values the rule accepts, with what they parse to. */
function goodValues(rule: NumericRule): Array<[string, unknown]> {
  switch (rule.kind) {
    case 'integer':
      return [
        [String(rule.min), rule.min],
        [String(rule.max), rule.max],
        [`0${rule.min + 1}`, rule.min + 1],
      ];
    case 'integer list':
      return [[`${rule.min},${rule.min + 1}`, [rule.min, rule.min + 1]]];
    case 'bytes':
      return [
        ['4mb', 4 * 1024 * 1024],
        ['1.5kb', 1536],
        ['1048576', 1048576],
      ];
    case 'time':
      return [
        ['90s', 90],
        ['5m', 300],
        ['1.5h', 5400],
        ['0', 0],
        [String(rule.max), rule.max],
      ];
    case 'number':
      return rule.max === Number.MAX_VALUE
        ? [
            ['5e-4', 5e-4],
            ['0.5', 0.5],
            ['3', 3],
          ]
        : [[String((rule.min + Math.min(rule.max, 1)) / 2), (rule.min + Math.min(rule.max, 1)) / 2]];
  }
}

const FLAGS = walk(createProgram()).filter((f) => f.option.required || f.option.optional);
const NUMERIC = FLAGS.filter((f) => f.rule);

describe('capsnet: every number parsed once, strictly, by type', () => {
  test('every option that takes a value is numeric (cli/args.ts), a choice, or a listed text option', () => {
    const unclassified = FLAGS.filter((f) => !f.rule && !f.option.argChoices && !TEXT_OPTIONS.has(`${f.path.join(' ')} ${f.option.long}`));
    assert.deepEqual(
      unclassified.map((f) => `${f.path.join(' ')} ${f.option.long}`),
      [],
    );
    // The table covers the flags of the issue: Triton's counts, seeds, checkpoint intervals, sizes, fractions.
    const names = new Set(NUMERIC.map((f) => `${f.path.join(' ')} ${f.option.long}`));
    for (const name of [
      'train --seed',
      'train --checkpoint-every',
      'export --instances',
      'export --max-batch-size',
      'export --max-queue-delay-us',
      'serve --body-limit',
      'serve --port',
      'serve --batch-wait-ms',
      'train --checkpoint-interval',
      'experiment affine --target-accuracy',
      'experiment routing --iterations',
      'corpus write --seed',
      'classify --presence-threshold',
      'parity --timeout',
    ]) {
      assert.ok(names.has(name), `${name} is parsed by cli/args.ts`);
    }
    assert.ok(NUMERIC.length >= 40, `${NUMERIC.length} numeric flags`);
  });

  test('abc, 1e3, -5, 0x10, 1.5, empty and out-of-range values are one-line usage errors naming the flag and its range', () => {
    let cases = 0;
    for (const { path, option, rule } of NUMERIC) {
      const args = (value: string) => [...path, ...(POSITIONALS[path.join(' ')] ?? []), option.long!, value];
      for (const value of badValues(rule!)) {
        const error = parseError(args(value));
        assert.ok(error, `${path.join(' ')} ${option.long} ${JSON.stringify(value)} was accepted`);
        assert.equal(error.message, `error: option '${option.flags}' argument '${value}' is invalid. ${option.long} must be ${rule!.expected}, got "${value}"`);
        assert.equal(error.exitCode, 1);
        assert.ok(!error.message.includes('\n'));
        cases++;
      }
      for (const [value, parsed] of goodValues(rule!)) {
        assert.equal(parseError(args(value)), undefined, `${path.join(' ')} ${option.long} ${value}`);
        assert.deepEqual(option.parseArg!(value, undefined), parsed, `${path.join(' ')} ${option.long} ${value}`);
      }
    }
    assert.ok(cases > 400, `${cases} cases`);
  });

  test("the ranges are the target fields': int32 for Triton counts, uint32 seeds, JS safe integers for uint64 and byte sizes", () => {
    const rule = (name: string) => NUMERIC.find((f) => `${f.path.join(' ')} ${f.option.long}` === name)!.rule!;
    assert.equal(rule('export --instances').max, 2 ** 31 - 1);
    assert.equal(rule('export --max-batch-size').max, 2 ** 31 - 1);
    assert.equal(rule('export --max-queue-delay-us').max, Number.MAX_SAFE_INTEGER);
    assert.equal(rule('train --seed').max, 2 ** 32 - 1);
    assert.equal(rule('train --seed').min, 0);
    assert.equal(rule('train --checkpoint-every').min, 0, '0 still means epoch ends only');
    assert.equal(rule('serve --body-limit').max, Number.MAX_SAFE_INTEGER);
    assert.equal(rule('serve --port').max, 65535);
    // The issue's cases, literally.
    assert.match(
      parseError(['export', 'run', '--instances', '99999999999'])!.message,
      /--instances must be an integer from 1 to 2147483647 \(Triton's int32 instance_group count\), got "99999999999"$/,
    );
    assert.match(parseError(['export', 'run', '--max-batch-size', '4294967297'])!.message, /--max-batch-size must be an integer from 1 to 2147483647/);
    assert.match(parseError(['train', '--seed', 'abc'])!.message, /--seed must be an integer from 0 to 4294967295 \(a uint32\), got "abc"$/);
    assert.match(parseError(['train', '--seed', '1e3'])!.message, /--seed must be an integer/);
    assert.match(parseError(['train', '--checkpoint-every', 'abc'])!.message, /--checkpoint-every must be an integer from 0 to 2147483647, got "abc"$/);
    // Routing iterations are unrolled into the graph: capped where the paper's 3 and the experiments' 7 fit with room.
    for (const args of [['export', 'run'], ['train'], ['experiment', 'routing', '--iterations']]) {
      const [flag, value] = args.length === 3 ? [[], '1,2147483647'] : [['--routing'], '2147483647'];
      assert.match(
        parseError([...args, ...flag, value])!.message,
        /(--routing|--iterations) must be (an integer|comma-separated integers) from 1 to 32\b.*, got "(1,)?2147483647"$/,
      );
    }
    assert.equal(parseError(['export', 'run', '--routing', '32']), undefined);
  });

  test("choices come from the library's constants", async () => {
    const { PRECISIONS, COMPUTE_PRECISIONS, INSTANCE_KINDS } = await import('../../../packages/capsnet/src/export/names.ts');
    const { MODEL_NAMES, BACKEND_NAMES } = await import('../../../packages/capsnet/src/train/names.ts');
    const { SCALES, OVERLAYS } = await import('../../../packages/capsnet/src/experiments/names.ts');
    const { PRESET_NAMES, POLARITIES } = await import('@capsnet-onnx/core');
    const choices = (name: string) => FLAGS.find((f) => `${f.path.join(' ')} ${f.option.long}` === name)!.option.argChoices;
    assert.deepEqual(choices('export --precision'), [...PRECISIONS]);
    assert.deepEqual(choices('export --compute'), [...COMPUTE_PRECISIONS]);
    assert.deepEqual(choices('export --instance-kind'), [...INSTANCE_KINDS]);
    assert.deepEqual(choices('train --model'), [...MODEL_NAMES]);
    assert.deepEqual(choices('train --preset'), [...PRESET_NAMES]);
    assert.deepEqual(choices('train --backend'), ['auto', ...BACKEND_NAMES]);
    assert.deepEqual(choices('experiment routing --backend'), ['auto', ...BACKEND_NAMES]);
    assert.deepEqual(choices('experiment affine --scale'), [...SCALES]);
    assert.deepEqual(choices('experiment multimnist --overlay'), [...OVERLAYS]);
    assert.deepEqual(choices('classify --polarity'), [...POLARITIES]);
    // --device: the runtime's device table, the same for every command that runs a model.
    const { nodeDeviceNames } = await import('@capsnet-onnx/runtime/internal');
    assert.deepEqual(choices('classify --device'), ['auto', ...nodeDeviceNames()]);
    assert.deepEqual(choices('serve --device'), ['auto', ...nodeDeviceNames()]);
    assert.ok(choices('classify --device')!.includes('wasm'), 'classify runs onnxruntime-web wasm in Node, as serve does');
  });

  test('through the capsnet binary: exit status 1, the usage error as the first line, no stack, nothing created', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'capsnet-args-'));
    try {
      const cases: Array<[string[], RegExp]> = [
        [['train', '--seed', 'abc', '--out', join(dir, 'run')], /--seed must be an integer from 0 to 4294967295 \(a uint32\), got "abc"/],
        [['train', '--checkpoint-every', 'abc', '--out', join(dir, 'run')], /--checkpoint-every must be an integer from 0 to 2147483647, got "abc"/],
        [['export', join(dir, 'run'), '--triton', join(dir, 'models'), '--instances', '99999999999'], /--instances must be an integer from 1 to 2147483647/],
        [['serve', join(dir, 'model.onnx'), '--body-limit', '0x10'], /--body-limit must be a size/],
        [['classify', join(dir, 'model.onnx'), 'x.png', '--top', '1.5'], /--top must be an integer from 1 to 2147483647, got "1.5"/],
        [['parity', join(dir, 'model.onnx'), '--digits', '-5'], /--digits must be an integer from 0 to 2147483647, got "-5"/],
        [['experiment', 'perturb', '--seed', '1e3', '--out', join(dir, 'exp')], /--seed must be an integer from 0 to 4294967295/],
        [['corpus', 'write', join(dir, 'corpus'), '--count', '0'], /--count must be an integer from 1 to 2147483647, got "0"/],
      ];
      for (const [args, expected] of cases) {
        const r = await execa('node', [CLI, ...args], { cwd: ROOT, reject: false });
        assert.equal(r.exitCode, 1, `${args.join(' ')}: ${r.stderr}`);
        const [first] = r.stderr.split('\n');
        assert.match(first!, new RegExp(`^error: option '--[a-z-]+ <[a-z]+>' argument '.*' is invalid\\. .*${expected.source}`));
        assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack');
        assert.ok(r.stderr.split('\n').filter(Boolean).length <= 2, r.stderr);
      }
      assert.deepEqual(readdirSync(dir), [], 'nothing was created');
      const json = await execa('node', [CLI, 'classify', join(dir, 'model.onnx'), 'x.png', '--json', '--max-batch', '1e3'], { cwd: ROOT, reject: false });
      assert.equal(json.exitCode, 1);
      assert.match(JSON.parse(json.stdout).error.message, /--max-batch must be an integer from 1 to 2147483647, got "1e3"/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('parity --backends, the old name of --devices, still works and says so in one line', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'capsnet-args-parity-'));
    try {
      const model = join(dir, 'model.onnx');
      const old = await execa('node', [CLI, 'parity', model, '--backends', 'node-cpu'], { cwd: ROOT, reject: false });
      const now = await execa('node', [CLI, 'parity', model, '--devices', 'node-cpu'], { cwd: ROOT, reject: false });
      const lines = old.stderr.split('\n').filter(Boolean);
      assert.equal(lines[0], 'capsnet parity: --backends is deprecated, use --devices (it takes the same values)');
      // After the note, the same outcome as --devices (here: the missing model, named).
      assert.equal(old.exitCode, now.exitCode);
      assert.deepEqual(lines.slice(1), now.stderr.split('\n').filter(Boolean));
      assert.match(now.stderr, /model .*model\.onnx does not exist/);
      assert.doesNotMatch(now.stderr, /deprecated/);
      assert.match(
        parseError(['parity', 'm.onnx', '--backends', 'node-tpu'])!.message,
        /--backends takes comma-separated devices from node-cpu, .*; unknown: node-tpu/,
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('train() called as a library refuses a NaN or fractional seed and checkpoint interval before creating anything', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'capsnet-args-lib-'));
    try {
      const base = {
        preset: 'small' as const,
        data: 'mnist-sample',
        epochs: 1,
        batchSize: 8,
        backend: 'cpu' as const,
        seed: 1,
        out: join(dir, 'run'),
        resume: false,
        checkpointEvery: 0,
        log: () => {},
        progressBar: false,
      };
      await assert.rejects(train({ ...base, seed: Number.NaN }), /train: seed must be an integer from 0 to 4294967295, got NaN/);
      await assert.rejects(train({ ...base, seed: 1.5 }), /train: seed must be an integer/);
      await assert.rejects(train({ ...base, checkpointEvery: Number.NaN }), /train: checkpointEvery must be an integer from 0/);
      await assert.rejects(train({ ...base, routing: 2 ** 31 - 1 }), /train: routing must be an integer from 1 to 32, got 2147483647/);
      assert.ok(!existsSync(join(dir, 'run')));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
