/** Registers `capsnet classify`. Light on purpose: the runtime (and ONNX Runtime) load only when it runs. */
import { existsSync, readFileSync } from 'node:fs';
import { Option, type Command } from 'commander';
import { POLARITIES, type Polarity, decoderPathFor } from '@capsnet-onnx/core';
import { DEVICE_TABLE, type DeviceName, type DeviceRow, nodeDevice } from '@capsnet-onnx/runtime/internal';
import { UsageError, chooseModel, pretrainedOption } from './pretrained.ts';
import { checkOnnxModel, refuseNonModel } from './model-file.ts';
import { deviceOption, positiveInt, presenceThreshold } from './args.ts';
import { onStopSignals, signalExitCode } from './signals.ts';

/** With --json, every error (commander's included) is one JSON object on stdout: {"error": {"code": ..., "message": ...}}. */
const wantsJson = () => process.argv.includes('--json');
const printJsonError = (code: string, message: string) => console.log(JSON.stringify({ error: { code, message } }));

/**
 * The stable code of an error that stops classify as a whole, by the error's class name (the runtime's classes
 * may come from another copy of @capsnet-onnx/core): what a script branches on, the message being for people.
 */
export function runErrorCode(e: unknown): string {
  const error = e as { name?: string; code?: unknown };
  switch (error?.name) {
    case 'UsageError':
      return 'USAGE';
    case 'NotAModelError':
    case 'ModelFormatError':
      return 'NOT_A_MODEL';
    case 'ModelFileError':
      return error.code === 'UNREADABLE' ? 'MODEL_UNREADABLE' : 'MODEL_NOT_FOUND';
    case 'DeviceUnavailableError':
      return 'DEVICE_UNAVAILABLE';
    case 'InputError':
      return 'BAD_INPUT';
    default:
      return 'FAILED';
  }
}

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
        'error or nothing could run (a bad model or option; with --json, {"error": {"code", "message"}}, the code one of\n' +
        'USAGE, NOT_A_MODEL, MODEL_NOT_FOUND, MODEL_UNREADABLE, DEVICE_UNAVAILABLE, BAD_INPUT, FAILED).\n' +
        'Results are written as each batch finishes. Ctrl-C (or SIGTERM) stops after the batch in flight: what is written\n' +
        'stays complete (--json: the object is closed, with "interrupted"), and the exit status is 130 (SIGTERM: 143).',
    )
    .configureOutput({
      outputError: (text, write) => (wantsJson() ? printJsonError('USAGE', text.trim().replace(/^error: /, '')) : write(text)),
    })
    .action(async (first: string | undefined, rest: string[], { pretrained, ...opts }) => {
      try {
        // With --pretrained every argument is an image.
        const files = pretrained !== undefined && first !== undefined ? [first, ...rest] : rest;
        const modelPath = chooseModel('classify', pretrained !== undefined ? undefined : first, pretrained);
        // An image in the model's place (the model forgotten) is named as such before "no images given".
        if (pretrained === undefined) refuseNonModel(modelPath);
        if (files.length === 0) throw new UsageError('classify: no images given: name PNG/JPEG files, IDX files, directories, or - for standard input');
        await classify(modelPath, files, opts);
      } catch (e) {
        if (!opts.json) throw e;
        printJsonError(runErrorCode(e), (e as Error).message);
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
  const m = model.metadata;
  // Results are written as each batch finishes, in input order, so an interrupted run keeps what it finished.
  const out = opts.json ? jsonResults({ model: modelPath, device: model.device, deviceReport: model.deviceReport }) : textResults(sources);
  // Ctrl-C or SIGTERM: finish and write the batch in flight, then stop; a second signal quits at once.
  let stopped: NodeJS.Signals | undefined;
  const signals = onStopSignals(
    (name) => {
      stopped = name;
    },
    (name) => process.exit(signalExitCode(name)),
  );
  // Output is written as it comes, so a reader that stops early (`| head`) is met mid-run: stop quietly, as `cat` does.
  const onOutputError = (e: NodeJS.ErrnoException) => {
    if (e.code === 'EPIPE') process.exit(process.exitCode ?? 0);
    throw e;
  };
  process.stdout.on('error', onOutputError);
  const counts = { rows: 0, failed: 0, labelled: 0, correct: 0 };
  try {
    let pending: { name: string; pixels: Float32Array; trueLabel?: number }[] = [];
    const flush = async () => {
      if (pending.length === 0) return;
      const results: Result[] = await model.classify(pending.map((p) => p.pixels));
      progress.tick(results.length);
      const batch: Row[] = results.map((r, i) => {
        const { name, trueLabel } = pending[i]!;
        if (trueLabel !== undefined) {
          counts.labelled++;
          if (trueLabel === r.label) counts.correct++;
        }
        const order = Array.from(r.lengths.keys()).sort((a, b) => r.lengths[b]! - r.lengths[a]!);
        const top = order
          .slice(0, opts.top)
          .map((k) => `${m.classLabels[k]} ${r.lengths[k]!.toFixed(4)}`)
          .join('  ');
        const truth = trueLabel === undefined ? '' : `  (true ${m.classLabels[trueLabel] ?? trueLabel}${trueLabel === r.label ? '' : ', WRONG'})`;
        return {
          json: {
            image: name,
            label: r.label,
            labelName: r.labelName,
            ...(r.reason ? { reason: r.reason } : {}),
            score: Number(r.lengths[r.longest]!.toFixed(6)),
            scores: Object.fromEntries(m.classLabels.map((label, k) => [label, Number(r.lengths[k]!.toFixed(6))])),
            ...(trueLabel !== undefined ? { trueLabel } : {}),
          },
          name,
          text: `${r.label === null ? `no digit (${r.reason})` : r.labelName}   scores: ${top}${truth}`,
        };
      });
      pending = [];
      counts.rows += batch.length;
      await out.write(batch);
    };
    let loaded = 0;
    read: for (const source of sources) {
      if (stopped) break;
      const images = loadSource(source, m, { polarity: opts.polarity, limit: opts.limit });
      loaded++;
      progress.grow(images.length - 1);
      for (const image of images) {
        if (image.error) {
          await flush(); // keep the output in argument order
          if (stopped) break read;
          progress.tick(1);
          counts.rows++;
          counts.failed++;
          await out.write([
            { json: { image: image.name, label: null, labelName: null, error: image.error }, name: image.name, text: `error: ${image.error.message}` },
          ]);
          continue;
        }
        pending.push({ name: image.name, pixels: image.pixels!, ...(image.trueLabel !== undefined ? { trueLabel: image.trueLabel } : {}) });
        if (pending.length >= opts.maxBatch) await flush();
        if (stopped) break read;
      }
    }
    if (!stopped) await flush();
    progress.stop();
    const accuracy = counts.labelled ? counts.correct / counts.labelled : undefined;
    const interrupted = stopped
      ? `interrupted by ${stopped} after ${counts.rows} of ${loaded < sources.length ? 'at least ' : ''}${progress.total()} images: ` +
        `the results written are those ${counts.rows}`
      : undefined;
    await out.end({ accuracy, labelled: counts.labelled, interrupted });
    if (interrupted) {
      console.error(`capsnet classify: ${interrupted}`);
      process.exitCode = signalExitCode(stopped);
      return;
    }
    if (counts.failed) {
      process.exitCode = 1;
      if (!opts.json) console.error(`capsnet: ${counts.failed} of ${counts.rows} images could not be read (see "error:" above)`);
    }
  } finally {
    signals.release();
    process.stdout.off('error', onOutputError);
    progress.stop();
    await model.dispose();
  }
}

/** One classified (or unreadable) image: its JSON row, and its name and the rest of its text line. */
interface Row {
  json: Record<string, unknown>;
  name: string;
  text: string;
}

interface ResultWriter {
  write(rows: Row[]): Promise<void>;
  end(summary: { accuracy?: number; labelled: number; interrupted?: string }): Promise<void>;
}

/**
 * --json: one JSON object, `{model, device, deviceReport, results: [...], accuracy?, interrupted?}`, laid out as
 * JSON.stringify(value, null, 2) would, written a batch at a time; an interrupted run still closes it.
 */
function jsonResults(header: Record<string, unknown>): ResultWriter {
  const indent = (text: string, pad: string) => text.replace(/\n/g, `\n${pad}`);
  let first = true;
  const head = Object.entries(header)
    .map(([key, value]) => `  ${JSON.stringify(key)}: ${indent(JSON.stringify(value, null, 2), '  ')},\n`)
    .join('');
  let started = false;
  const start = async () => {
    if (!started) await writeOut(`{\n${head}  "results": [`);
    started = true;
  };
  return {
    async write(rows) {
      if (!rows.length) return;
      await start();
      const text = rows.map((row) => `    ${indent(JSON.stringify(row.json, null, 2), '    ')}`).join(',\n');
      await writeOut(`${first ? '\n' : ',\n'}${text}`);
      first = false;
    },
    async end({ accuracy, interrupted }) {
      await start();
      const tail = [
        ...(accuracy !== undefined ? [`  "accuracy": ${JSON.stringify(accuracy)}`] : []),
        ...(interrupted ? [`  "interrupted": ${JSON.stringify(interrupted)}`] : []),
      ];
      await writeOut(`${first ? '' : '\n  '}]${tail.map((t) => `,\n${t}`).join('')}\n}\n`);
    },
  };
}

/**
 * Text: one line per image, the names padded to the longest known so far (every file argument's, and each IDX
 * file's `file[i]` once it is read), then the accuracy of labelled images.
 */
function textResults(sources: readonly ({ path: string } | { name: string })[]): ResultWriter {
  let width = Math.max(0, ...sources.map((s) => ('path' in s ? s.path : s.name).length));
  return {
    async write(rows) {
      width = Math.max(width, ...rows.map((r) => r.name.length));
      if (rows.length) await writeOut(`${rows.map((r) => `${r.name.padEnd(width)}  ${r.text}`).join('\n')}\n`);
    },
    async end({ accuracy, labelled }) {
      if (accuracy !== undefined) await writeOut(`accuracy: ${(100 * accuracy).toFixed(2)}% of ${labelled} labelled images\n`);
    },
  };
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
  return new Promise((resolve, reject) => process.stdout.write(text, (e) => (e ? reject(e) : resolve())));
}

/** Runs with at least this many images report progress as lines on a stderr that is not a terminal. */
const PROGRESS_LINES_FROM = 1000;

/**
 * Progress in images (an IDX file holds thousands), on stderr: a bar on a terminal (from 20 images), otherwise one
 * line per tenth (from PROGRESS_LINES_FROM images), e.g. `classified 2000/10000 images (20%)`. `total` starts at one
 * image per file; `grow` adds a file's other images once it is read.
 */
async function startProgress(files: number): Promise<{ grow(n: number): void; tick(n: number): void; stop(): void; total(): number }> {
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
      total: () => total,
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
    total: () => total,
  };
}
