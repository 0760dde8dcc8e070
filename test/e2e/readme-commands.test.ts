/**
 * Every command the READMEs show, run from a clean clone after `npm ci` exactly as written (issue 19, item 2).
 *
 * The commands are parsed out of the READMEs (README.md, docs/*.md, packages/*\/README.md, packages/capsnet/src/*\/README.md):
 * the lines of ```sh blocks (`\` continuations joined, `# comments` dropped) and the inline code spans that are
 * commands. COMMANDS holds a decision for each, keyed by its exact README text: it runs, or it is exempt with the
 * reason (printed as the test's skip line). The fast tests check that the READMEs and the table name the same
 * commands, so a new README command needs a decision and a stale entry fails.
 *
 * The e2e describe copies the repository's files (tracked and untracked-not-ignored) into a temp folder, installs it
 * with the README's `ONNXRUNTIME_NODE_INSTALL=skip npm ci` (that row's run: the clone is not installed twice before
 * `npm ci && npm start`) in a user's environment (no NODE_OPTIONS, no npm_* variables), trains a small run, and runs each
 * command with `bash -o pipefail -c` in a fresh folder inside that clone (npx finds the clone's capsnet from there, as
 * from its root). Each must exit 0 and print no stack trace; a server must answer a PNG upload (multipart: the
 * image-decoding worker pool), a JSON classify and GET /, then exit 0 on SIGTERM. A synopsis runs with its optional `[...]` groups removed and
 * its placeholders as shell variables set here (RUN_DIR -> "$RUN_DIR", DIR -> "$DIR"); where that is not enough
 * the entry gives the concrete form, which starts with the README's words up to its first placeholder or bracket.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { constants, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, describe, test } from 'node:test';
import { execa } from 'execa';
import { encode as encodePng } from 'fast-png';
import { makeDigitCorpus } from '../../packages/capsnet/src/data/corpus.ts';
import { loadMnistSample } from '../../packages/capsnet/src/data/datasets.ts';
import { ROOT } from '../support/fixtures.ts';
import { appEnv } from '../support/packages.ts';
import { readEnv } from '../support/env.ts';

// ------------------------------------------------------------------------------------------------ the READMEs

export interface ReadmeCommand {
  /** The command as the README shows it: continuations joined, comment dropped, whitespace runs collapsed. */
  text: string;
  /** file:line of its first occurrence. */
  where: string;
}

/**
 * README.md, the guides (docs/*.md), packages/*\/README.md and packages/capsnet/src/*\/README.md, relative to the
 * repository root. The examples' READMEs are not here: test/e2e/consumers.test.ts runs each example as its README says.
 */
export function readmeFiles(root = ROOT): string[] {
  const files = ['README.md'];
  for (const page of readdirSync(join(root, 'docs')).sort()) {
    if (page.endsWith('.md')) files.push(`docs/${page}`);
  }
  for (const pkg of readdirSync(join(root, 'packages')).sort()) {
    if (existsSync(join(root, 'packages', pkg, 'README.md'))) files.push(`packages/${pkg}/README.md`);
  }
  const src = join(root, 'packages', 'capsnet', 'src');
  for (const dir of readdirSync(src).sort()) {
    if (existsSync(join(src, dir, 'README.md'))) files.push(`packages/capsnet/src/${dir}/README.md`);
  }
  return files;
}

/** A code span is a command when it starts like one; `capsnet NAME` alone names a subcommand in prose. */
const COMMAND_START = /^(npx |npm |capsnet |node |[A-Z][A-Z0-9_]*=\S+ npm )/;
const SUBCOMMAND_NAME = /^(npx )?capsnet [a-z-]+$/;

/** The commands of one README's text, in order of appearance. */
export function commandsOf(markdown: string, file = 'README.md'): ReadmeCommand[] {
  const out: ReadmeCommand[] = [];
  const lines = markdown.split('\n');
  const prose: string[] = [];
  let fence: string | null = null;
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    const marker = /^\s*```(\S*)/.exec(line);
    if (marker) {
      fence = fence === null ? marker[1]! : null;
      prose.push('');
      continue;
    }
    if (fence === null) {
      prose.push(line);
      continue;
    }
    prose.push('');
    if (fence !== 'sh') continue;
    let joined = line;
    const first = i;
    while (/\\\s*$/.test(joined) && i + 1 < lines.length) joined = joined.replace(/\\\s*$/, ' ') + lines[++i]!;
    for (let k = first + 1; k <= i; k++) prose.push('');
    const text = joined
      .replace(/(^|\s)#.*$/, '')
      .replace(/\s+/g, ' ')
      .trim();
    if (text) out.push({ text, where: `${file}:${first + 1}` });
  }
  // Inline spans, with the fenced blocks blanked (line numbers kept); a span may wrap onto the next line.
  const text = prose.join('\n');
  for (const m of text.matchAll(/`([^`]+)`/g)) {
    const span = m[1]!.replace(/\s+/g, ' ').trim();
    if (!COMMAND_START.test(span) || SUBCOMMAND_NAME.test(span)) continue;
    out.push({ text: span, where: `${file}:${text.slice(0, m.index).split('\n').length}` });
  }
  return out;
}

/** Every README command, first occurrence of each text. */
export function readmeCommands(root = ROOT): ReadmeCommand[] {
  const seen = new Map<string, ReadmeCommand>();
  for (const file of readmeFiles(root)) {
    for (const c of commandsOf(readFileSync(join(root, file), 'utf8'), file)) if (!seen.has(c.text)) seen.set(c.text, c);
  }
  return [...seen.values()];
}

/** Placeholders a synopsis may use, as the shell variables the test sets. */
const PLACEHOLDERS: Record<string, string> = { RUN_DIR: '"$RUN_DIR"', DIR: '"$DIR"' };
const PLACEHOLDER_WORD = /(?<![\w$"])(RUN_DIR|DIR|NAME|PATH|SPEC|N|W)(?![\w"])/;

/** The README text up to its first optional group or placeholder: what a concrete form must start with. */
export function fixedPrefix(text: string): string {
  const bracket = text.search(/(^|\s)\[/);
  const placeholder = text.search(PLACEHOLDER_WORD);
  const cut = Math.min(...[bracket, placeholder].filter((i) => i >= 0), text.length);
  return text.slice(0, cut).trimEnd();
}

/** The synopsis as a command: optional `[...]` groups (nested ones too) removed, placeholders as shell variables. */
export function synopsisToCommand(text: string): string {
  let out = '';
  let depth = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (c === '[' && (depth > 0 || i === 0 || /\s/.test(text[i - 1]!))) depth++;
    else if (c === ']' && depth > 0) depth--;
    else if (depth === 0) out += c;
  }
  out = out.replace(/(?<![\w$"])RUN_DIR\.\.\.(?![\w"])/g, PLACEHOLDERS.RUN_DIR!);
  for (const [word, variable] of Object.entries(PLACEHOLDERS)) out = out.replace(new RegExp(`(?<![\\w$"])${word}(?![\\w"])`, 'g'), variable);
  return out.replace(/\s+/g, ' ').trim();
}

// ------------------------------------------------------------------------------------------------ the decisions

/** What a command's folder holds before it runs (path in the folder -> its source). */
type Source =
  | 'run' //           the trained run directory (RUN_DIR points at it)
  | 'run2' //          a second run, another seed (an ensemble's members must differ)
  | 'model' //         model.onnx and model.decoder.onnx, exported by the CLI from the run
  | 'int8' //          model.int8.onnx and its decoder, exported by the CLI
  | 'digit.png' //     a test digit, black ink on white paper (the corpus writer's rendering)
  | 'photo.jpg' //     a test digit photographed (the corpus writer's JPEG)
  | 'idx' //           an IDX3 file of 8 test digits
  | 'images' //        a folder of PNG and JPEG test digits, written by `capsnet corpus write`
  | 'empty' //         an empty folder
  | { from: string; path: string }; // a file or folder an earlier README command wrote (its exact text)

interface Runs {
  /** The concrete command where the README's text with groups removed and placeholders as variables is not enough. */
  form?: string;
  /** Why the concrete form differs from the text. */
  because?: string;
  /** Files in the command's folder before it runs. RUN_DIR is always `<folder>/run` and DIR `<folder>/DIR`. */
  files?: Record<string, Source>;
  /** A server: run it until 'listening on', then upload a PNG (multipart), classify JSON, GET /, SIGTERM. */
  serve?: boolean;
  /** A file of the folder to feed on standard input. */
  stdin?: string;
  /** Run in the clone's root instead of a fresh folder (it changes the clone: npm ci). */
  inRoot?: boolean;
  /** The clone's install (an `npm ci`): runs as written in the clone's root, as the first step, before every other row. */
  install?: boolean;
}
interface Exempt {
  exempt: string;
}
type Decision = Runs | Exempt;

const TRITON =
  'needs Triton Inference Server (docker, NVIDIA runtime): not on this machine; the repository it serves is written by the export --triton row, which runs';
const UNPUBLISHED =
  'installs the packages from the npm registry, where they are not published: test/e2e/consumers.test.ts installs the same from `npm pack` tarballs';
const NUGET = "downloads onnxruntime-node's CUDA provider from a NuGet feed that no machine here reaches (and needs an NVIDIA GPU)";
const PAPER = 'paper scale: the full MNIST (--data mnist) for hours, on a GPU; its ci-scale form runs';
const SAME_AS_QUICK = 'same script as its quick form below, which runs';
const SYNOPSIS = 'a synopsis over NAME and ci|medium|paper: the ci forms of perturb, affine and mnist-table, `all` and `report` run as their own rows';
const TINY_EXPERIMENT = '--train-limit 256 --test-limit 64 --batch-size 32';

/** README usage lines too long for one source line. */
const TRAIN_USAGE =
  'npx capsnet train [--model capsnet|baseline-cnn] [--preset paper|small] [--data SPEC] [--epochs N] ' +
  '[--batch-size N] [--routing N] [--backend auto|tensorflow|webgpu|wasm|cpu] [--seed N] [--out DIR] ' +
  '[--resume | --overwrite] [--allow-suspicious-data] [--checkpoint-every 50] [--checkpoint-interval ' +
  '5m] [--train-limit N] [--test-limit N] [--no-progress] [--progress-interval 30s] [--primary-caps N] ' +
  '[--[no-]none-of-the-above] [--reconstruction-weight W] [--learning-rate 0.001] [--decay-rate 0.96] [--decay-steps N]';
const TRITON_EXPORT_USAGE =
  'npx capsnet export RUN_DIR --triton models [--precision fp16] [--triton-name capsnet] ' +
  '[--max-batch-size 32] [--max-queue-delay-us 2000] [--instance-kind auto|cpu|gpu] [--instances 1]';

export const COMMANDS: Record<string, Decision> = {
  // README.md, top (the lead's section)
  // The e2e takes about 5 minutes on 2 idle cores with it (18 on 2 cores loaded ~8 deep), so npm ci runs again here.
  'npm ci && npm start': { inRoot: true },
  'npm test': { exempt: 'the whole test suite: this test is part of it' },
  'npm start': { exempt: 'runs as part of `npm ci && npm start`' },
  'ONNXRUNTIME_NODE_INSTALL=skip npm ci': { install: true },
  'npm ci': { exempt: 'the first step of this test, in the fresh clone (as `ONNXRUNTIME_NODE_INSTALL=skip npm ci`); and again in `npm ci && npm start`' },
  'npm run test:quick': { exempt: 'a tier of the test suite, which the lead runs (`npm test`); not nested inside one of its own tests' },
  'npm run test:e2e': { exempt: "the test suite's end-to-end tier: this test is part of it" },
  // Install and embed: the API reference (TypeDoc into the git-ignored docs/api/)
  'npm run docs:api': {},
  // Training
  [TRAIN_USAGE]: {
    form: 'npx capsnet train --preset small --epochs 1 --train-limit 512 --test-limit 128 --out run --no-progress',
    because: 'the defaults train the paper-size model for 50 epochs; this is the run RUN_DIR names in every other row',
  },
  'npx capsnet ensemble RUN_DIR RUN_DIR... -o ensemble.onnx': {
    form: 'npx capsnet ensemble "$RUN_DIR" run2 -o ensemble.onnx',
    because: 'the members must be different runs: RUN_DIR and a second one',
    files: { run: 'run', run2: 'run2' },
  },
  'npx capsnet train --preset small --epochs 3 --batch-size 32 --data mnist-sample': {
    form: 'npx capsnet train --preset small --epochs 3 --batch-size 32 --data mnist-sample --train-limit 256 --test-limit 64 --no-progress',
    because: '3 epochs of 8,000 digits take minutes: the same flags on a few hundred',
  },
  'npx capsnet plot RUN_DIR [-o FILE.svg] [--overwrite]': { files: { run: 'run' } },
  'npx capsnet train --out RUN_DIR --resume': { files: { run: 'run' } },
  // Export
  'npx capsnet export RUN_DIR -o model.onnx': { files: { run: 'run' } },
  'npx capsnet inspect model.onnx [--json]': { files: { 'model.onnx': 'model' } },
  'npx capsnet export RUN_DIR --precision int8': { files: { run: 'run' } },
  'npx capsnet export RUN_DIR --precision fp16 -o model.fp16.onnx': { files: { run: 'run' } },
  'npx capsnet export RUN_DIR --precision fp16 --compute fp32 -o model.fp16.onnx': { files: { run: 'run' } },
  'npx capsnet inspect model.int8.onnx': { files: { 'model.int8.onnx': 'int8' } },
  'npm run bench:precision -- --checkpoint RUN_DIR': { exempt: SAME_AS_QUICK },
  'npx capsnet serve model.int8.onnx': { files: { 'model.int8.onnx': 'int8' }, serve: true },
  'npx capsnet serve --pretrained mnist-small': { serve: true },
  'npx capsnet classify --pretrained mnist-small:int8 digit.png': { files: { 'digit.png': 'digit.png' } },
  [TRITON_EXPORT_USAGE]: { files: { run: 'run' } },
  'docker run --gpus all -p 8000:8000 -v "$PWD/models:/models" nvcr.io/nvidia/tritonserver:<yy.mm>-py3 tritonserver --model-repository=/models': {
    exempt: TRITON,
  },
  "curl -s localhost:8000/v2/models/capsnet/infer -H 'content-type: application/json' -d @request.json": { exempt: TRITON },
  // Runtime
  'npx capsnet classify model.onnx digit.png photo.jpg DIR t10k-images-idx3-ubyte - [--polarity auto|light-on-dark|dark-on-light] [--json]': {
    files: {
      'model.onnx': 'model',
      'digit.png': 'digit.png',
      'photo.jpg': 'photo.jpg',
      DIR: 'images',
      't10k-images-idx3-ubyte': 'idx',
      'stdin.png': 'digit.png',
    },
    stdin: 'stdin.png',
  },
  'npx capsnet corpus write digits --count 5': {},
  'npx capsnet train --preset small --train-limit 12000 --test-limit 1000 --epochs 1 --batch-size 32 --out runs/quick': {},
  'npx capsnet classify model.onnx digits/paper/0000-4.png digits/photo/0000-4.jpg': {
    files: { 'model.onnx': 'model', digits: { from: 'npx capsnet corpus write digits --count 5', path: 'digits' } },
  },
  'ONNXRUNTIME_NODE_INSTALL=cuda12 npm rebuild onnxruntime-node': { exempt: NUGET },
  'npm run install:cuda': { exempt: NUGET },
  // Images
  'npx capsnet corpus write DIR [--count 200]': {
    form: 'npx capsnet corpus write "$DIR" --count 10',
    because: '200 of each style take minutes: 10',
  },
  'npx capsnet classify model.onnx DIR --json | npx capsnet corpus score': { files: { 'model.onnx': 'model', DIR: 'images' } },
  // Install and embed
  'npm pack --workspaces --pack-destination DIR': { files: { DIR: 'empty' } },
  'npm install DIR/*.tgz': {
    exempt:
      'installs the tarballs into an app (a folder outside the repository, or npm installs into the ' +
      'workspace root): test/e2e/consumers.test.ts does exactly this',
  },
  'ONNXRUNTIME_NODE_INSTALL=skip npm install DIR/capsnet-onnx-{core,runtime,mnist}-*.tgz onnxruntime-node': {
    exempt: 'installs tarballs into an app outside the repository: test/e2e/consumers.test.ts installs these three into its Node apps',
  },
  'ONNXRUNTIME_NODE_INSTALL=skip npm install @capsnet-onnx/runtime @capsnet-onnx/mnist onnxruntime-node': { exempt: UNPUBLISHED },
  'npm install @capsnet-onnx/runtime @capsnet-onnx/mnist onnxruntime-web': { exempt: UNPUBLISHED },
  'ONNXRUNTIME_NODE_INSTALL=skip npm install @capsnet-onnx/runtime onnxruntime-node': { exempt: UNPUBLISHED },
  'npm run lint': {},
  'npm run format': {},
  'npm run typecheck': {},
  'npx capsnet parity --help': {},
  'npx capsnet parity --pretrained mnist-small:int8 --digits 300': {
    form: 'npx capsnet parity --pretrained mnist-small:int8 --digits 300 --devices node-cpu',
    because: "the numbers quoted are node-cpu's; every device (Chromium, SwiftShader WebGPU) takes minutes",
  },
  'npm run pretrained -- RUN_DIR --name mnist-small': {
    exempt:
      'replaces the shipped model in packages/mnist from a finished run on the full official MNIST (hours of training); test/unit/mnist checks what it wrote',
  },
  'npm install --ignore-scripts': { exempt: UNPUBLISHED },
  // Parity, serving
  'npx capsnet parity model.onnx --checkpoint RUN_DIR [--devices node-cpu,node-webgpu,...] [--json report.json]': {
    files: { 'model.onnx': 'model', run: 'run' },
  },
  'npx capsnet serve model.onnx --device auto --port 8080': { files: { 'model.onnx': 'model' }, serve: true },
  // Benchmarks
  'npm run bench:train': { exempt: SAME_AS_QUICK },
  'npm run bench:infer': { exempt: SAME_AS_QUICK },
  'npm run bench:serve': { exempt: SAME_AS_QUICK },
  'npm run bench:page': {
    exempt:
      'three browser entries in Chromium, cold and warm: about 3 minutes on 2 loaded cores; test/e2e/serve-page.test.ts and ' +
      'test/e2e/runtime-browser.test.ts run the same page and entries in Chromium',
  },
  'npm run bench:install': {
    exempt:
      'no quick form: it packs the tarballs (as the `npm pack --workspaces` row, which runs) and installs five apps from them, ' +
      'about 7 minutes on 2 loaded cores; test/e2e/consumers.test.ts installs the same apps and checks them',
  },
  'npm run bench:train -- --preset small --backends wasm --steps 1 --no-torch --no-unfused --no-epoch': {},
  'npm run bench:train -- --preset small --only-epoch --epoch-images 320 --epoch-test 100 --epoch-batch 32 --steady-window 3 --no-torch': {},
  'npm run bench:train -- --only-epoch --epoch-images 768 --epoch-test 200 --steady-window 3': {
    exempt: `paper size, whole epochs at batches 32 and 128 with PyTorch: ${SAME_AS_QUICK}`,
  },
  'npm run bench:infer -- --preset small --backends ort-node-cpu-1t,ort-web-wasm,page-wasm --latency-runs 5 --throughput-runs 1': {},
  'npm run bench:serve -- --model model.onnx --requests 64 --concurrency 8 --rounds 1': { files: { 'model.onnx': 'model' } },
  'npm run bench:precision -- --checkpoint RUN_DIR --test-limit 200 --backends ort-node-cpu-1t --latency-runs 3': { files: { run: 'run' } },
  'npm run build:kernels': {},
  'npm run build:web': {},
  'npm run bench:train -- --backends wasm --batch 32,128 --no-unfused --steps 5 --convolutions onnxruntime,wasm': {
    exempt: `paper size, batches 32 and 128, with ORT's and XNNPACK's convolutions (about 15 minutes): ${SAME_AS_QUICK}`,
  },
  'npm run bench:train -- --backends wasm --batch 32,128 --no-unfused --steps 5': {
    exempt: `paper size, batches 32 and 128, step rows and whole epochs with PyTorch (about 12 minutes): ${SAME_AS_QUICK}`,
  },
  'npm run bench:train -- --only-epoch --epoch-batch 32': {
    exempt: `paper size, whole epochs at batch 32 with PyTorch (about 4 minutes): ${SAME_AS_QUICK}`,
  },
  'npm run bench:train -- --only-epoch --epoch-batch 32 --no-torch --no-probe': {
    exempt: `paper size, whole epochs at batch 32 without PyTorch (about 2 minutes): ${SAME_AS_QUICK}`,
  },
  'npm run bench:page -- --rounds 2': {
    exempt: 'the bench:page row above, twice over (about 6 minutes): test/e2e/serve-page.test.ts and test/e2e/runtime-browser.test.ts run the page',
  },
  // Checking a GPU
  'npm run gpu:bundle': {
    exempt: 'builds the offline GPU bundle (minutes: xz, a training run, apt-get download): test/e2e/gpu-bundle.test.ts builds it and runs it',
  },
  'gpu-bundle/run.sh gpu-results': { exempt: 'runs on the GPU machine, from the bundle; test/e2e/gpu-bundle.test.ts runs it at tiny sizes on SwiftShader' },
  // Paper experiments
  'npx capsnet experiment NAME --scale ci|medium|paper': { exempt: SYNOPSIS },
  'npx capsnet experiment perturb --scale ci --train-limit 512 --test-limit 128 --out experiments': {},
  'npx capsnet experiment report experiments': {
    files: { experiments: { from: 'npx capsnet experiment perturb --scale ci --train-limit 512 --test-limit 128 --out experiments', path: 'experiments' } },
  },
  'npx capsnet experiment mnist-table --scale ci': {
    form: `npx capsnet experiment mnist-table --scale ci ${TINY_EXPERIMENT} --seeds 1`,
    because: 'five models over three seeds at ci scale take tens of minutes on 2 cores',
  },
  'npx capsnet experiment mnist-table --scale paper --data mnist --seeds 3': { exempt: PAPER },
  'npx capsnet experiment routing --scale paper --data mnist --seeds 3': { exempt: PAPER },
  'npx capsnet experiment routing --scale paper --data mnist': { exempt: PAPER },
  'npx capsnet experiment affine --scale ci --affnist-generated': {
    form: `npx capsnet experiment affine --scale ci --affnist-generated ${TINY_EXPERIMENT} --epochs 1`,
    because: 'training two models to 85% takes tens of minutes on 2 cores',
  },
  'npx capsnet experiment multimnist --scale paper --data mnist': { exempt: PAPER },
  'npx capsnet experiment perturb --scale ci': {
    form: `npx capsnet experiment perturb --scale ci ${TINY_EXPERIMENT}`,
    because: 'its ci training takes minutes on 2 cores',
  },
  // Layout
  'npm pack': { exempt: 'names the step in prose; `npm pack --workspaces --pack-destination DIR` runs' },
  'npm run bench:*': { exempt: 'a glob naming the bench scripts; each runs in its own row' },
  'node --test': { exempt: 'names the test runner in prose; `npm test` runs it' },
  // docs/releasing.md
  'npx changeset': { exempt: 'interactive (asks on a terminal which packages changed and how): test/e2e/publish-dry-run.test.ts writes a changeset' },
  'npx changeset status': { exempt: 'compares with the main branch in git, and the clone this test makes is a copy of the files, not a git repository' },
  'npx changeset version': {
    exempt: "consumes the changesets and rewrites the packages' versions: test/e2e/publish-dry-run.test.ts runs it on a copy of the manifests",
  },
  'npm install': { exempt: 'the release step that records new versions in the lock file; this test runs `npm ci`' },
  'npm publish -w packages/core && npm publish -w packages/runtime && npm publish -w packages/capsnet': {
    exempt: 'publishes to the npm registry: test/e2e/publish-dry-run.test.ts runs npm publish --dry-run of each package instead',
  },
  'git tag vX.Y.Z && git push origin vX.Y.Z': { exempt: "tags a release and pushes the tag to the project's remote" },
  // packages/capsnet/README.md
  'ONNXRUNTIME_NODE_INSTALL=skip npm install capsnet-onnx': { exempt: UNPUBLISHED },
  'npx capsnet train --preset small --epochs 1 --batch-size 32 --train-limit 24000 --out run': {
    form: 'npx capsnet train --preset small --epochs 1 --batch-size 32 --train-limit 24000 --out run --train-limit 256 --test-limit 64 --no-progress',
    because: 'an epoch of 24,000 official digits and the 10,000-digit test pass take minutes: the same flags on a few hundred (the last --train-limit counts)',
  },
  'npx capsnet export run -o model.onnx': { files: { run: 'run' } },
  'npx capsnet serve model.onnx': { files: { 'model.onnx': 'model' }, serve: true },
  // packages/capsnet/src/experiments/README.md
  'npx capsnet experiment NAME --scale ci|medium|paper --out DIR': { exempt: SYNOPSIS },
  'npx capsnet experiment report DIR': {
    files: { DIR: { from: 'npx capsnet experiment perturb --scale ci --train-limit 512 --test-limit 128 --out experiments', path: 'experiments' } },
  },
  'npx capsnet experiment all': {
    form: 'npx capsnet experiment all --train-limit 64 --test-limit 32 --batch-size 32 --epochs 1',
    because: 'the five experiments at ci scale take an hour on 2 cores',
  },
  // packages/capsnet/src/serve/README.md
  'open http://127.0.0.1:8080/': { exempt: 'opens a browser; the serve rows GET / instead' },
  // packages/runtime/README.md
  'npm install @capsnet-onnx/runtime onnxruntime-web': { exempt: UNPUBLISHED },
  'npx capsnet export RUN_DIR --precision fp16 --compute fp32': { files: { run: 'run' } },
};

/** The command a runnable entry runs. */
export function commandFor(text: string, decision: Runs): string {
  return decision.form ?? synopsisToCommand(text);
}

// ------------------------------------------------------------------------------------------------ fast checks

describe('README commands: the table', () => {
  test('the READMEs show exactly the commands the table decides', () => {
    const shown = readmeCommands();
    const keys = new Set(Object.keys(COMMANDS));
    const undecided = shown.filter((c) => !keys.has(c.text)).map((c) => `${c.where}: ${c.text}`);
    const texts = new Set(shown.map((c) => c.text));
    const stale = [...keys].filter((k) => !texts.has(k));
    assert.deepEqual(undecided, [], 'README commands without a decision in COMMANDS (runs, or exempt with a reason)');
    assert.deepEqual(stale, [], 'COMMANDS entries that no README shows any more');
  });

  test('no README shows a bare `capsnet ...` command: from a clone it is `npx capsnet ...`', () => {
    const bare = readmeCommands()
      .filter((c) => /(^|[|&;]\s*)capsnet /.test(c.text))
      .map((c) => `${c.where}: ${c.text}`);
    assert.deepEqual(bare, []);
  });

  test('a concrete form starts with the README words up to the first placeholder or bracket', () => {
    for (const [text, decision] of Object.entries(COMMANDS)) {
      if ('exempt' in decision) {
        assert.ok(decision.exempt.length > 10, `${text}: an exemption needs its reason`);
        continue;
      }
      const command = commandFor(text, decision);
      assert.ok(command.startsWith(fixedPrefix(text)) || command.startsWith(synopsisToCommand(fixedPrefix(text))), `${text}\n  runs as\n${command}`);
      if (decision.form) assert.ok(decision.because, `${text}: say why the concrete form differs`);
      for (const source of Object.values(decision.files ?? {})) {
        if (typeof source === 'object')
          assert.ok(source.from in COMMANDS && !('exempt' in COMMANDS[source.from]!), `${text}: reads from '${source.from}', which does not run`);
      }
    }
  });

  test("exactly one row is the clone's install, and it is an npm ci", () => {
    const installs = Object.entries(COMMANDS).filter(([, d]) => !('exempt' in d) && d.install);
    assert.deepEqual(
      installs.map(([k]) => /(^|\s)npm ci$/.test(k)),
      [true],
    );
  });

  test('the parser: sh lines, continuations, comments, inline command spans', () => {
    const md = [
      'Intro `npx capsnet serve` names it; `npm run x -- --a 1` and `FOO=1 npm rebuild y` run; `capsnet train --x`',
      'wraps `npx capsnet a',
      '  b` here.',
      '```sh',
      '# only a comment',
      'npx capsnet export RUN_DIR -o m.onnx   # a comment',
      'docker run a \\',
      '    b [--c d]',
      '```',
      '```js',
      'npm test',
      '```',
    ].join('\n');
    assert.deepEqual(commandsOf(md, 'X.md'), [
      { text: 'npx capsnet export RUN_DIR -o m.onnx', where: 'X.md:6' },
      { text: 'docker run a b [--c d]', where: 'X.md:7' },
      { text: 'npm run x -- --a 1', where: 'X.md:1' },
      { text: 'FOO=1 npm rebuild y', where: 'X.md:1' },
      { text: 'capsnet train --x', where: 'X.md:1' },
      { text: 'npx capsnet a b', where: 'X.md:2' },
    ]);
    assert.equal(
      synopsisToCommand('npx capsnet t [--a N] [--[no-]b] --out DIR idx:DIR RUN_DIR RUN_DIR... [--x | --y]'),
      'npx capsnet t --out "$DIR" idx:"$DIR" "$RUN_DIR" "$RUN_DIR"',
    );
    assert.equal(fixedPrefix('npx capsnet export RUN_DIR -o m'), 'npx capsnet export');
    assert.equal(fixedPrefix('npx capsnet inspect model.onnx [--json]'), 'npx capsnet inspect model.onnx');
    assert.equal(fixedPrefix('npx capsnet experiment perturb --scale ci'), 'npx capsnet experiment perturb --scale ci');
  });
});

// ------------------------------------------------------------------------------------------------ e2e

interface Row {
  command: string;
  result: string;
  seconds: number;
}

const STACK_LINE = /^\s+at (?:.+ \()?(?:file:\/\/|node:|\/)[^\s)]*:\d+:\d+\)?$/m;

async function freePort(preferred: number): Promise<number> {
  const tryPort = (port: number) =>
    new Promise<number>((resolve, reject) => {
      const server = createServer();
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => {
        const { port: got } = server.address() as { port: number };
        server.close(() => resolve(got));
      });
    });
  return tryPort(preferred).catch(() => tryPort(0));
}

/**
 * The command a chain of wrappers runs: the deepest node process under pid (bash -> npx -> sh -> capsnet's bin ->
 * its child), following node and shell processes only, so that a helper the server started (esbuild's service,
 * when GET / builds the page's bundle) is not mistaken for it.
 */
async function innermostNode(pid: number): Promise<number> {
  let found = pid;
  for (;;) {
    const { stdout } = await execa('ps', ['-o', 'pid=,args=', '--ppid', String(pid)], { reject: false });
    const children = stdout
      .split('\n')
      .map((l) => /^\s*(\d+)\s+(\S+)/.exec(l))
      .filter((m) => m !== null)
      .map((m) => ({ pid: Number(m[1]), program: m[2]!.split('/').pop()! }))
      .filter((c) => ['node', 'npm', 'sh', 'bash'].includes(c.program));
    const next = children[children.length - 1];
    if (!next) return found;
    pid = next.pid;
    if (next.program === 'node') found = pid;
  }
}

/** One run of `bash -c command` in cwd, output captured. */
function bash(command: string, cwd: string, env: NodeJS.ProcessEnv, stdinFile?: string) {
  const child = spawn('bash', ['-o', 'pipefail', '-c', command], { cwd, env, detached: true, stdio: [stdinFile ? 'pipe' : 'ignore', 'pipe', 'pipe'] });
  if (stdinFile) child.stdin!.end(readFileSync(stdinFile));
  let output = '';
  child.stdout!.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (output += d.toString()));
  const exited = new Promise<number>((resolve) => child.on('exit', (code, signal) => resolve(code ?? 128 + (signal ? constants.signals[signal] : 0))));
  return { child, exited, output: () => output };
}

const E2E_TIMEOUT_S = 3600;

describe('README commands from a clean clone (e2e)', { timeout: E2E_TIMEOUT_S * 1000 }, () => {
  const rows: Row[] = [];
  const exempted: Row[] = [];
  const folders = new Map<string, string>();
  let clone = '';
  let sources = '';
  let env: NodeJS.ProcessEnv = {};
  let count = 0;

  // The clone, its npm ci and the CLI-made inputs: made once, by the first command that runs (a filtered run
  // that selects none of them makes nothing).
  let ready: Promise<void> | undefined;
  const setup = () => (ready ??= prepare());
  async function prepare(): Promise<void> {
    clone = mkdtempSync(join(tmpdir(), 'capsnet-readme-'));
    const { stdout } = await execa('git', ['ls-files', '-co', '--exclude-standard', '-z'], { cwd: ROOT });
    for (const file of stdout.split('\0').filter(Boolean)) {
      if (!existsSync(join(ROOT, file))) continue; // deleted in the working tree, not yet in the index
      mkdirSync(dirname(join(clone, file)), { recursive: true });
      cpSync(join(ROOT, file), join(clone, file));
    }
    env = appEnv();
    // The clone's one install before `npm ci && npm start`: the README's own `ONNXRUNTIME_NODE_INSTALL=skip npm ci`, as written.
    const install = Object.keys(COMMANDS).find((k) => (COMMANDS[k] as Runs).install)!;
    const started = performance.now();
    const installing = bash(install, clone, env);
    const installed = await installing.exited;
    const installSeconds = (performance.now() - started) / 1000;
    rows.push({ command: `${install} (the clone's install)`, result: installed === 0 ? 'ok: exit 0' : 'FAILED', seconds: installSeconds });
    assert.equal(installed, 0, `${install}: exit ${installed}:\n${installing.output()}`);
    assert.doesNotMatch(installing.output(), STACK_LINE, installing.output());

    // What the commands read, made by the CLI itself (the run, its exports, the corpus writer's images).
    sources = join(clone, 'readme-runs', '00-sources');
    mkdirSync(sources, { recursive: true });
    const cli = async (label: string, command: string) => {
      const t0 = performance.now();
      const { exitCode, all } = await execa('bash', ['-c', command], { cwd: sources, env, extendEnv: false, all: true, reject: false });
      assert.equal(exitCode, 0, `${command}:\n${all}`);
      rows.push({ command: `(setup) ${label}`, result: 'ok', seconds: (performance.now() - t0) / 1000 });
    };
    const trainText = Object.keys(COMMANDS).find((k) => k.startsWith('npx capsnet train [--model'))!;
    const train = commandFor(trainText, COMMANDS[trainText] as Runs);
    const t0 = performance.now();
    const trained = await execa('bash', ['-c', train], { cwd: sources, env, extendEnv: false, all: true, reject: false });
    const trainSeconds = (performance.now() - t0) / 1000;
    assert.equal(trained.exitCode, 0, trained.all);
    assert.doesNotMatch(trained.all ?? '', STACK_LINE);
    rows.push({ command: train, result: 'ok (the run RUN_DIR names)', seconds: trainSeconds });
    folders.set(trainText, sources);
    await cli('train a second run (--seed 2) for the ensemble', `${train.replace('--out run', '--out run2')} --seed 2`);
    await cli('export run -o model.onnx', 'npx capsnet export run -o model.onnx');
    await cli('export run --precision int8 -o model.int8.onnx', 'npx capsnet export run --precision int8 -o model.int8.onnx');
    // The corpus writer's own renderings (capsnet corpus write), and an IDX file of raw test digits.
    const corpus = makeDigitCorpus(2, 1);
    mkdirSync(join(sources, 'images'), { recursive: true });
    for (const image of corpus) {
      if (!/\/0000-/.test(image.file)) continue;
      writeFileSync(join(sources, 'images', image.file.replace('/', '-')), image.bytes);
    }
    writeFileSync(join(sources, 'digit.png'), corpus.find((c) => c.style === 'paper')!.bytes);
    writeFileSync(join(sources, 'photo.jpg'), corpus.find((c) => c.style === 'photo')!.bytes);
    const { test: split } = loadMnistSample();
    const n = 8;
    const idx = Buffer.alloc(16 + n * 784);
    idx.writeUInt32BE(0x803, 0);
    idx.writeUInt32BE(n, 4);
    idx.writeUInt32BE(28, 8);
    idx.writeUInt32BE(28, 12);
    for (let i = 0; i < n * 784; i++) idx[16 + i] = Math.round(split.images[i]! * 255);
    writeFileSync(join(sources, 't10k-images-idx3-ubyte'), idx);
    // a PNG for the server's multipart upload: the first test digit, 8-bit gray, as MNIST stores it
    writeFileSync(
      join(sources, 'upload.png'),
      encodePng({ width: 28, height: 28, channels: 1, depth: 8, data: Uint8Array.from(split.images.subarray(0, 784), (v) => Math.round(v * 255)) }),
    );
  }

  after(() => {
    if (rows.length === 0) return;
    const width = Math.min(100, Math.max(...rows.map((r) => r.command.length)));
    const lines = [...rows, ...exempted].map((r) => `| ${r.command.padEnd(width)} | ${r.result} | ${r.seconds.toFixed(1)} |`);
    console.log(
      ['', `| command | result | seconds |`, '| --- | --- | --- |', ...lines, `total ${rows.reduce((s, r) => s + r.seconds, 0).toFixed(0)} s`].join('\n'),
    );
    if (clone && !readEnv('CAPSNET_KEEP_README_CLONE')) rmSync(clone, { recursive: true, force: true });
    else if (clone) console.log(`clone kept: ${clone}`);
  });

  function populate(folder: string, files: Record<string, Source>) {
    for (const [dest, source] of Object.entries(files)) {
      const to = join(folder, dest);
      if (typeof source === 'object') {
        const from = folders.get(source.from);
        assert.ok(from, `'${source.from}' has not run before this command`);
        cpSync(join(from, source.path), to, { recursive: true });
      } else if (source === 'empty') {
        mkdirSync(to, { recursive: true });
      } else if (source === 'model' || source === 'int8') {
        const name = source === 'model' ? 'model' : 'model.int8';
        cpSync(join(sources, `${name}.onnx`), to);
        cpSync(join(sources, `${name}.decoder.onnx`), to.replace(/\.onnx$/, '.decoder.onnx'));
      } else {
        const from = { run: 'run', run2: 'run2', 'digit.png': 'digit.png', 'photo.jpg': 'photo.jpg', idx: 't10k-images-idx3-ubyte', images: 'images' }[source];
        cpSync(join(sources, from), to, { recursive: true });
      }
    }
  }

  async function runServe(command: string, folder: string, commandEnv: NodeJS.ProcessEnv): Promise<string> {
    const proc = bash(command, folder, commandEnv);
    const deadline = Date.now() + 300_000;
    let url: string | undefined;
    while (!url) {
      const m = /listening on (http:\/\/\S+?)[\s(]/.exec(proc.output());
      if (m) url = m[1]!.replace(/\/$/, '');
      else if (proc.child.exitCode !== null || Date.now() > deadline) {
        process.kill(-proc.child.pid!, 'SIGKILL');
        throw new Error(`no 'listening on' (exit ${proc.child.exitCode}):\n${proc.output()}`);
      } else await new Promise((r) => setTimeout(r, 200));
    }
    try {
      const form = new FormData();
      form.append('file', new Blob([readFileSync(join(sources, 'upload.png'))], { type: 'image/png' }), 'digit.png');
      const upload = await fetch(`${url}/v1/classify`, { method: 'POST', body: form });
      const uploaded = (await upload.json()) as { results?: Array<{ longest: number; lengths: number[] }> };
      assert.equal(upload.status, 200, JSON.stringify(uploaded));
      assert.equal(uploaded.results?.length, 1);
      assert.equal(uploaded.results![0]!.lengths.length, 10);
      const { test: split } = loadMnistSample();
      const json = await fetch(`${url}/v1/classify`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ image: Array.from(split.images.subarray(0, 784)) }),
      });
      const classified = (await json.json()) as { results?: Array<{ longest: number }> };
      assert.equal(json.status, 200, JSON.stringify(classified));
      assert.equal(classified.results?.length, 1);
      const page = await fetch(`${url}/`);
      assert.equal(page.status, 200);
      assert.match(page.headers.get('content-type') ?? '', /text\/html/);
      await page.text();
    } catch (error) {
      process.kill(-proc.child.pid!, 'SIGKILL');
      throw new Error(`${(error as Error).message}\n--- server output:\n${proc.output()}`);
    }
    // SIGTERM to the server itself, the innermost process under bash -> npx -> sh -> capsnet's bin -> its child: its
    // exit status must come back through every one of them.
    process.kill(await innermostNode(proc.child.pid!), 'SIGTERM');
    const code = await Promise.race([proc.exited, new Promise<number>((r) => setTimeout(() => r(-1), 60_000))]);
    if (code === -1) process.kill(-proc.child.pid!, 'SIGKILL');
    assert.equal(code, 0, `exit ${code} after SIGTERM:\n${proc.output()}`);
    assert.doesNotMatch(proc.output(), STACK_LINE, proc.output());
    return `ok: PNG upload, JSON classify, GET / 200; exit 0 on SIGTERM`;
  }

  // In README order, except that the commands that change the clone itself (npm ci) run last.
  const ordered = readmeCommands().sort(
    (a, b) => Number(!!(COMMANDS[a.text] as Runs | undefined)?.inRoot) - Number(!!(COMMANDS[b.text] as Runs | undefined)?.inRoot),
  );
  for (const { text, where } of ordered) {
    const decision = COMMANDS[text];
    if (!decision) continue; // the fast test names it
    if ('exempt' in decision) {
      exempted.push({ command: text, result: `exempt: ${decision.exempt}`, seconds: 0 });
      test(text, { skip: `${where}: ${decision.exempt}` }, () => {});
      continue;
    }
    if (text.startsWith('npx capsnet train [--model')) continue; // ran in before(): the run RUN_DIR names
    if (decision.install) {
      // Ran first, in setup: it installed the clone every other row runs in (setup fails on a non-zero exit or a stack trace).
      test(`${text}  (${where})`, async () => {
        await setup();
        assert.ok(rows.some((r) => r.command.startsWith(text) && r.result === 'ok: exit 0'));
      });
      continue;
    }
    test(`${text}  (${where})`, async () => {
      await setup();
      let command = commandFor(text, decision);
      let note = '';
      const folder = decision.inRoot
        ? clone
        : join(clone, 'readme-runs', `${String(++count).padStart(2, '0')}-${text.replace(/[^a-z0-9]+/gi, '-').slice(0, 40)}`);
      mkdirSync(folder, { recursive: true });
      populate(folder, decision.files ?? {});
      folders.set(text, folder);
      if (decision.serve) {
        // 8080 is the README's (and serve's default) port; on a shared machine it may be taken: then another.
        const port = await freePort(8080);
        if (port !== 8080) {
          command = /--port 8080/.test(command) ? command.replace('--port 8080', `--port ${port}`) : `${command} --port ${port}`;
          note = ` (port 8080 was taken: ran on ${port})`;
        }
      }
      const commandEnv = appEnv({ RUN_DIR: join(folder, 'run'), DIR: join(folder, 'DIR') });
      const t0 = performance.now();
      try {
        let result: string;
        if (decision.serve) result = await runServe(command, folder, commandEnv);
        else {
          const proc = bash(command, folder, commandEnv, decision.stdin && join(folder, decision.stdin));
          const code = await proc.exited;
          assert.equal(code, 0, `exit ${code}:\n${proc.output()}`);
          assert.doesNotMatch(proc.output(), STACK_LINE, proc.output());
          result = 'ok: exit 0';
        }
        rows.push({ command: command + note, result, seconds: (performance.now() - t0) / 1000 });
      } catch (error) {
        rows.push({ command: command + note, result: 'FAILED', seconds: (performance.now() - t0) / 1000 });
        throw error;
      }
    });
  }
});
