/**
 * Shared test fixtures. `trainedSmallRun()` trains a small-preset checkpoint once (about a minute) through the
 * real CLI and caches it under test-artifacts/, keyed by a hash of the training code, so export, runtime and
 * parity tests all check a genuinely trained model.
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const ARTIFACTS = join(ROOT, 'test-artifacts');
export const CLI = join(ROOT, 'packages', 'capsnet', 'bin', 'capsnet.js');

function trainingCodeHash(): string {
  const hash = createHash('sha256');
  // Everything a trained checkpoint depends on: the core (config, shapes), the data sets, the network, the trainer, the file format.
  for (const dir of [
    'packages/core/src',
    'packages/capsnet/src/model',
    'packages/capsnet/src/train',
    'packages/capsnet/src/data',
    'packages/capsnet/src/files',
  ]) {
    for (const file of readdirSync(join(ROOT, dir), { recursive: true, encoding: 'utf8' }).sort()) {
      if (file.endsWith('.ts')) hash.update(file).update(readFileSync(join(ROOT, dir, file)));
    }
  }
  return hash.digest('hex').slice(0, 12);
}

/** A small-preset run trained for one epoch on 3,000 embedded digits; returns its run directory. */
export async function trainedSmallRun(): Promise<string> {
  const dir = join(ARTIFACTS, 'fixtures', `small-${trainingCodeHash()}`);
  if (existsSync(join(dir, 'checkpoint.bin'))) return dir;
  await execa(
    'node',
    // the embedded sample (the offline test data; `--data mnist`, the default, is the official set)
    [
      CLI,
      'train',
      '--preset',
      'small',
      '--data',
      'mnist-sample',
      '--epochs',
      '1',
      '--train-limit',
      '3000',
      '--batch-size',
      '32',
      '--seed',
      '1',
      '--out',
      dir,
      '--no-progress',
    ],
    { cwd: ROOT, stdio: 'inherit' },
  );
  return dir;
}
