/**
 * train() on the tiny CapsNet of fault-child.ts (FAULT_CONFIG, FAULT_RUN: 48 embedded digits in batches of 16, 3 steps
 * an epoch), 2 epochs on wasm, quiet; `extra` overrides any option. For the tests of checkpoints and stopping.
 */
import { train } from '../../packages/capsnet/src/train/trainer.ts';
import { FAULT_CONFIG, FAULT_RUN } from './fault-child.ts';

export const tinyTrain = (out: string, extra: Partial<Parameters<typeof train>[0]>) =>
  train({
    preset: 'small',
    data: 'mnist-sample',
    epochs: 2,
    backend: 'wasm',
    out,
    resume: false,
    checkpointEvery: 1,
    configOverrides: FAULT_CONFIG,
    ...FAULT_RUN,
    log: () => {},
    progressBar: false,
    ...extra,
  });
