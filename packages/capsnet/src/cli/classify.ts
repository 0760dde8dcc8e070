/** Registers `capsnet classify`. Light on purpose: the runtime (and ONNX Runtime) load only when it runs. */
import { existsSync, readFileSync } from 'node:fs';
import { Option, type Command } from 'commander';
import { POLARITIES, type Polarity, decoderPathFor } from '@capsnet-onnx/core';
import { DEVICE_TABLE, type DeviceName, type DeviceRow, nodeDevice } from '@capsnet-onnx/runtime/internal';
import { chooseModel, pretrainedOption } from './pretrained.ts';
import { checkOnnxModel, refuseNonModel } from './model-file.ts';
import { deviceOption, positiveInt, presenceThreshold } from './args.ts';

/** With --json, every error (commander's included) is one JSON object on stdout: {"error": {"message": ...}}. */
const wantsJson = () => process.argv.includes('--json');
const printJsonError = (message: string) => console.log(JSON.stringify({ error: { message } }));

export function registerRuntimeCommands(program: Command, rows: readonly DeviceRow[] = DEVICE_TABLE): void {
  program
    .command('classify')
    .description(
      'classify images with an exported model: PNG and JPEG files (prepared like the training data: see `polarity`), ' +
        'IDX image files, directories of them, or `-` (standard input: one image, or a list of paths one a line). ' +
        'Prints each label (or "no digit" and why) and its capsule lengths (scores); progress (per image) goes to stderr',
    )
    .argument('[model]', 'model.onnx from `capsnet export` (with --pretrained: the first image)')
    .argument('[images...]', 'PNG/JPEG files, IDX image files (e.g. t10k-images-idx3-ubyte[.gz]), directories, or -')
    .addOption(pretrainedOption())
    .addOption(deviceOption(rows))
    .option('--json', 'print JSON instead of text (errors too)', false)
    .option('--top <k>', 'scores to show per image (text output)', positiveInt('--top'), 3)
    .option('--limit <n>', 'at most N images from each IDX file', positiveInt('--limit'))
    .addOption(new Option('--polarity <polarity>', 'ink against ground in PNG/JPEG files: auto detects it from the border').choices(POLARITIES).default('auto'))
    .option(
      '--presence-threshold <length>',
      "capsule length below which no class is present (default: the model's, 0.1)",
      presenceThreshold('--presence-threshold'),
    )
    .option('--max-batch <n>', 'images per ONNX Runtime run', positiveInt('--max-batch'), 256)
    .option('--threads <n>', 'CPU threads (devices cpu and wasm)', positiveInt('--threads'))
    .addHelpText(
      'after',
      '\nA file that cannot be classified (missing, unreadable, not an image, the wrong size) gets its own row with\n' +
        '"error:" (--json: an "error" object with a code: NOT_FOUND, UNREADABLE, NOT_AN_IMAGE, BAD_IMAGE, TOO_LARGE);\n' +
        'the other files are still classified. Exit status: 0 when every image was classified, 1 when any row is an\n' +
        'error or nothing could run (a bad model or option; with --json, {"error": {"message": ...}}).',
    )
    .configureOutput({
      outputError: (text, write) => (wantsJson() ? printJsonError(text.trim().replace(/^error: /, '')) : write(text)),
    })
    .action(async (first: string | undefined, rest: string[], { pretrained, ...opts }) => {
      try {
        // With --pretrained every argument is an image.
        const files = pretrained !== undefined && first !== undefined ? [first, ...rest] : rest;
        const modelPath = chooseModel('classify', pretrained !== undefined ? undefined : first, pretrained);
        // An image in the model's place (the model forgotten) is named as such before "no images given".
        if (pretrained === undefined) refuseNonModel(modelPath);
        if (files.length === 0) throw new Error('classify: no images given: name PNG/JPEG files, IDX files, directories, or - for standard input');
        await classify(modelPath, files, opts);
      } catch (e) {
        if (!opts.json) throw e;
        printJsonError((e as Error).message);
        process.exitCode = 1;
      }
    });
}

interface ClassifyCliOptions {
  device: DeviceName | 'auto';
  json: boolean;
  top: number;
  limit?: number;
  polarity: Polarity;
  presenceThreshold?: number;
  maxBatch: number;
  threads?: number;
}

async function classify(modelPath: string, files: string[], opts: ClassifyCliOptions): Promise<void> {
  const { expandArguments, loadSource } = await import('./image-files.ts');
  const log = opts.json ? () => {} : (line: string) => console.error(line);
  const sources = expandArguments(files, () => new Uint8Array(readFileSync(0)));
  const model = await loadModel(modelPath, opts, log);
  type Result = Awaited<ReturnType<typeof model.classify>>[number];
  const progress = await startProgress(sources.length);
  try {
    const m = model.metadata;
    const rows: Array<Record<string, unknown> & { image: string }> = [];
    const texts: string[] = [];
    let pending: { name: string; pixels: Float32Array; trueLabel?: number }[] = [];
    const flush = async () => {
      if (pending.length === 0) return;
      const results: Result[] = await model.classify(pending.map((p) => p.pixels));
      progress.tick(results.length);
      results.forEach((r, i) => {
        const { name, trueLabel } = pending[i]!;
        rows.push({
          image: name,
          label: r.label,
          labelName: r.labelName,
          ...(r.reason ? { reason: r.reason } : {}),
          score: Number(r.lengths[r.longest]!.toFixed(6)),
          scores: Object.fromEntries(m.classLabels.map((label, k) => [label, Number(r.lengths[k]!.toFixed(6))])),
          ...(trueLabel !== undefined ? { trueLabel } : {}),
        });
        const order = Array.from(r.lengths.keys()).sort((a, b) => r.lengths[b]! - r.lengths[a]!);
        const top = order
          .slice(0, opts.top)
          .map((k) => `${m.classLabels[k]} ${r.lengths[k]!.toFixed(4)}`)
          .join('  ');
        const truth = trueLabel === undefined ? '' : `  (true ${m.classLabels[trueLabel] ?? trueLabel}${trueLabel === r.label ? '' : ', WRONG'})`;
        texts.push(`${name}\t${r.label === null ? `no digit (${r.reason})` : r.labelName}   scores: ${top}${truth}`);
      });
      pending = [];
    };
    for (const source of sources) {
      const images = loadSource(source, m, { polarity: opts.polarity, limit: opts.limit });
      progress.grow(images.length - 1);
      for (const image of images) {
        if (image.error) {
          await flush(); // keep the output in argument order
          progress.tick(1);
          rows.push({ image: image.name, label: null, labelName: null, error: image.error });
          texts.push(`${image.name}\terror: ${image.error.message}`);
          continue;
        }
        pending.push({ name: image.name, pixels: image.pixels!, ...(image.trueLabel !== undefined ? { trueLabel: image.trueLabel } : {}) });
        if (pending.length >= opts.maxBatch) await flush();
      }
    }
    await flush();
    progress.stop();
    const labelled = rows.filter((r) => r.trueLabel !== undefined);
    const accuracy = labelled.length ? labelled.filter((r) => r.label === r.trueLabel).length / labelled.length : undefined;
    const failed = rows.filter((r) => r.error).length;
    if (failed) process.exitCode = 1;
    if (opts.json) {
      await writeOut(
        JSON.stringify(
          { model: modelPath, device: model.device, deviceReport: model.deviceReport, results: rows, ...(accuracy !== undefined ? { accuracy } : {}) },
          null,
          2,
        ),
      );
      return;
    }
    const width = Math.max(...rows.map((r) => r.image.length));
    const lines = texts.map((line) => {
      const [name, rest] = line.split('\t') as [string, string];
      return `${name.padEnd(width)}  ${rest}`;
    });
    if (accuracy !== undefined) lines.push(`accuracy: ${(100 * accuracy).toFixed(2)}% of ${labelled.length} labelled images`);
    await writeOut(lines.join('\n'));
    if (failed) console.error(`capsnet: ${failed} of ${rows.length} images could not be read (see "error:" above)`);
  } finally {
    progress.stop();
    await model.dispose();
  }
}

/**
 * The model on the device asked for: onnxruntime-node's devices (and `auto`) through @capsnet-onnx/runtime/node,
 * onnxruntime-web's that run in Node (wasm) through @capsnet-onnx/runtime/web, as `capsnet serve` does.
 */
async function loadModel(modelPath: string, opts: ClassifyCliOptions, log: (line: string) => void) {
  const options = {
    device: opts.device,
    maxBatch: opts.maxBatch,
    threads: opts.threads,
    log,
    polarity: opts.polarity,
    ...(opts.presenceThreshold !== undefined ? { presenceThreshold: opts.presenceThreshold } : {}),
  };
  if (opts.device === 'auto' || nodeDevice(opts.device)?.runtime !== 'web') {
    const { CapsNet } = await import('@capsnet-onnx/runtime/node');
    try {
      return await CapsNet.load(modelPath, options);
    } catch (e) {
      await checkOnnxModel(modelPath); // a file that is not ONNX at all: said in the project's words
      throw e;
    }
  }
  // onnxruntime-web takes bytes (or URLs): read the files here, with the Node entry's messages for a bad path.
  const { CapsNet } = await import('@capsnet-onnx/runtime/web');
  const { ModelFileError } = await import('@capsnet-onnx/core');
  const read = (path: string, what: string): Uint8Array => {
    try {
      return readFileSync(path);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') {
        throw new ModelFileError(`${what} file ${path} does not exist: check the path, or export one with \`capsnet export\``, path, 'NOT_FOUND');
      }
      throw new ModelFileError(`cannot read ${what} file ${path}: ${(e as Error).message}`, path, 'UNREADABLE');
    }
  };
  const decoder = decoderPathFor(modelPath);
  try {
    return await CapsNet.load(read(modelPath, 'model'), { ...options, ...(existsSync(decoder) ? { decoder: read(decoder, 'decoder') } : {}) });
  } catch (e) {
    if (!(e instanceof ModelFileError)) await checkOnnxModel(modelPath);
    // Loaded from bytes, the runtime calls the file "the model": name it (the error keeps its class).
    if (e instanceof Error && !(e instanceof ModelFileError)) e.message = `${modelPath}: ${e.message}`;
    throw e;
  }
}

/**
 * Write to stdout and wait until it is flushed: the CLI exits as soon as the action returns, and a large write
 * to a pipe is asynchronous in Node, so a plain console.log of a big result could be cut short.
 */
function writeOut(text: string): Promise<void> {
  return new Promise((resolve, reject) => process.stdout.write(`${text}\n`, (e) => (e ? reject(e) : resolve())));
}

/** Runs with at least this many images report progress as lines on a stderr that is not a terminal. */
const PROGRESS_LINES_FROM = 1000;

/**
 * Progress in images (an IDX file holds thousands), on stderr: a bar on a terminal (from 20 images), otherwise one
 * line per tenth (from PROGRESS_LINES_FROM images), e.g. `classified 2000/10000 images (20%)`. `total` starts at one
 * image per file; `grow` adds a file's other images once it is read.
 */
async function startProgress(files: number): Promise<{ grow(n: number): void; tick(n: number): void; stop(): void }> {
  let total = files;
  let done = 0;
  if (!process.stderr.isTTY) {
    let tenth = 0;
    return {
      grow: (n) => {
        total += n;
      },
      tick: (n) => {
        done += n;
        if (total < PROGRESS_LINES_FROM) return;
        const now = Math.floor((10 * done) / total);
        if (now > tenth) {
          tenth = now;
          process.stderr.write(`classified ${done}/${total} images (${Math.round((100 * done) / total)}%)\n`);
        }
      },
      stop: () => {},
    };
  }
  const { SingleBar, Presets } = await import('cli-progress');
  const bar = new SingleBar({ stream: process.stderr, format: 'classifying {bar} {value}/{total} images', clearOnComplete: true }, Presets.shades_classic);
  let started = false;
  let stopped = false;
  return {
    grow: (n) => {
      total += n;
      if (started) bar.setTotal(total);
    },
    tick: (n) => {
      done += n;
      if (!started && total >= 20 && !stopped) {
        bar.start(total, done);
        started = true;
      } else if (started) bar.update(done);
    },
    stop: () => {
      if (started && !stopped) bar.stop();
      stopped = true;
    },
  };
}
