/**
 * `npm start`: the main job end to end on the embedded digits. Trains the small preset, exports it to ONNX,
 * classifies the held-out digits with ONNX Runtime and checks parity against the tfjs model.
 * Each step is the public CLI, so this is also what a user would type.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';

const out = process.argv[2] ?? 'runs/demo';
const epochs = process.env.DEMO_EPOCHS ?? '3';
const cli = join(import.meta.dirname, '..', 'packages', 'capsnet', 'bin', 'capsnet.js');

async function step(title: string, args: string[]): Promise<void> {
  console.log(`\n$ capsnet ${args.join(' ')}    # ${title}`);
  await execa('node', [cli, ...args], { stdio: 'inherit' });
}

try {
  // A second `npm start` continues the run it left (a run directory is reused only with --resume).
  const again = existsSync(join(out, 'checkpoint.bin'));
  await step(again ? `continue the run in ${out} (delete it to start over)` : 'train the small preset on the embedded MNIST digits', [
    'train',
    '--preset',
    'small',
    '--epochs',
    epochs,
    '--batch-size',
    '32',
    '--out',
    out,
    ...(again ? ['--resume'] : []),
  ]);
  // On a second run model.onnx is the one this demo exported into its own run directory: replace it.
  await step('export to ONNX, routing unrolled', ['export', out, '-o', join(out, 'model.onnx'), ...(again ? ['--overwrite'] : [])]);
  await step('inspect the file', ['inspect', join(out, 'model.onnx')]);
  await step('parity: tfjs reference vs ONNX Runtime in Node', ['parity', join(out, 'model.onnx'), '--checkpoint', out, '--devices', 'node-cpu,node-wasm']);
  console.log(`\ndone: ${out}/model.onnx (serve it with: npx capsnet serve ${out}/model.onnx)`);
} catch (e) {
  console.error(`demo failed at a step above (${(e as Error).message.split('\n')[0]})`);
  process.exitCode = 1;
}
