/** Registers `capsnet classify`. Light on purpose: the runtime (and ONNX Runtime) load only when it runs. */
import { InvalidArgumentError, Option, type Command } from 'commander';

const positive = (name: string) => (value: string) => {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError(`${name} must be a positive integer, got "${value}"`);
  return n;
};

export function registerRuntimeCommands(program: Command): void {
  program
    .command('classify')
    .description('classify PNG images or an IDX image file with an exported model; prints each label and its capsule lengths (scores)')
    .argument('<model>', 'model.onnx from `capsnet export`')
    .argument('<images...>', 'PNG files (resized to the model if needed) and/or IDX image files (e.g. t10k-images-idx3-ubyte[.gz])')
    .addOption(new Option('--device <device>', 'execution provider').choices(['auto', 'cpu', 'cuda', 'webgpu']).default('auto'))
    .option('--json', 'print JSON instead of text', false)
    .option('--top <k>', 'scores to show per image (text output)', positive('--top'), 3)
    .option('--limit <n>', 'at most N images from each IDX file', positive('--limit'))
    .option('--invert', 'invert pixels (dark digit on a light background)', false)
    .option('--max-batch <n>', 'images per ONNX Runtime run', positive('--max-batch'), 256)
    .option('--threads <n>', 'CPU threads (device cpu)', positive('--threads'))
    .action(async (modelPath: string, files: string[], opts) => {
      const { CapsNet } = await import('@capsnet-onnx/runtime/node');
      type Result = Awaited<ReturnType<Awaited<ReturnType<typeof CapsNet.load>>['classify']>>[number];
      const { readImageFiles } = await import('./image-files.ts');
      const log = opts.json ? () => {} : (line: string) => console.error(line);
      const model = await CapsNet.load(modelPath, { device: opts.device, maxBatch: opts.maxBatch, threads: opts.threads, log });
      try {
        const m = model.metadata;
        const input = readImageFiles(files, m, { invert: opts.invert, limit: opts.limit });
        for (const note of input.notes) log(note);
        const pixels = m.inputHeight * m.inputWidth * m.inputChannels;
        const results: Result[] = [];
        for (let start = 0; start < input.count; start += opts.maxBatch) {
          const end = Math.min(input.count, start + opts.maxBatch);
          results.push(...(await model.classify(input.images.subarray(start * pixels, end * pixels))));
        }
        const rows = results.map((r, i) => ({
          image: input.names[i]!,
          label: r.label,
          labelName: r.labelName,
          score: r.lengths[r.label]!,
          scores: Object.fromEntries(m.classLabels.map((name, k) => [name, Number(r.lengths[k]!.toFixed(6))])),
          ...(input.labels[i] !== undefined ? { trueLabel: input.labels[i]! } : {}),
        }));
        const labelled = rows.filter((r) => r.trueLabel !== undefined);
        const accuracy = labelled.length ? labelled.filter((r) => r.label === r.trueLabel).length / labelled.length : undefined;
        if (opts.json) {
          console.log(JSON.stringify({ model: modelPath, device: model.device, deviceReport: model.deviceReport, results: rows, ...(accuracy !== undefined ? { accuracy } : {}) }, null, 2));
          return;
        }
        const width = Math.max(...rows.map((r) => r.image.length));
        for (const [i, r] of rows.entries()) {
          const order = Array.from(results[i]!.lengths.keys()).sort((a, b) => results[i]!.lengths[b]! - results[i]!.lengths[a]!);
          const top = order.slice(0, opts.top).map((k) => `${m.classLabels[k]} ${results[i]!.lengths[k]!.toFixed(4)}`).join('  ');
          const truth = r.trueLabel === undefined ? '' : `  (true ${m.classLabels[r.trueLabel] ?? r.trueLabel}${r.trueLabel === r.label ? '' : ', WRONG'})`;
          console.log(`${r.image.padEnd(width)}  ${r.labelName}   scores: ${top}${truth}`);
        }
        if (accuracy !== undefined) console.log(`accuracy: ${(100 * accuracy).toFixed(2)}% of ${labelled.length} labelled images`);
      } finally {
        await model.dispose();
      }
    });
}
