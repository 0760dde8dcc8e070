/**
 * KernelThreads (packages/capsnet/src/train/backends/wasm-simd.ts): a kernel call cut into chunks that the calling
 * thread and worker_threads helpers claim on one shared memory. Run here on the training kernels' `transpose` over a
 * memory of our own: every element lands where it belongs, over many calls in a row (a helper that wakes late must
 * never run a chunk of a later call with an earlier call's kernel), with more chunks than rows, and a trap in a
 * chunk is an error while the next call still works.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import { KernelThreads, partRange } from '../../../packages/capsnet/src/train/backends/wasm-simd.ts';

const MODULE = new WebAssembly.Module(
  readFileSync(new URL('../../../packages/capsnet/src/train/backends/kernels/training-kernels-shared.wasm', import.meta.url)),
);
const NAMES = ['transpose', 'adam'] as const;

function setup(helpers: number): { threads: KernelThreads; heap: Float32Array } {
  const memory = new WebAssembly.Memory({ initial: 64, maximum: 1024, shared: true });
  const local = new WebAssembly.Instance(MODULE, { env: { memory } }).exports as unknown as Record<string, (...a: number[]) => unknown>;
  return { threads: new KernelThreads(local, MODULE, memory, NAMES, helpers), heap: new Float32Array(memory.buffer) };
}

/** Transposes a rows x cols matrix at float offset 0 into offset `dst` through the threads; returns the result. */
function transpose(threads: KernelThreads, heap: Float32Array, rows: number, cols: number, dst: number): Float32Array {
  threads.run('transpose', (part, parts) => [0, cols, 4 * dst, rows, ...partRange(rows, parts, part), cols]);
  return heap.slice(dst, dst + rows * cols);
}

describe('KernelThreads', () => {
  for (const helpers of [1, 3]) {
    test(`${helpers} helper(s): 300 calls in a row of different sizes, each element where it belongs`, () => {
      const { threads, heap } = setup(helpers);
      assert.equal(threads.parts, (helpers + 1) * 4);
      for (let call = 0; call < 300; call++) {
        const rows = 1 + (call % 37),
          cols = 1 + ((call * 7) % 29);
        for (let i = 0; i < rows * cols; i++) heap[i] = call * 10_000 + i;
        const dst = 4096;
        heap.fill(-1, dst, dst + rows * cols);
        const out = transpose(threads, heap, rows, cols, dst);
        for (let r = 0; r < rows; r++) {
          for (let c = 0; c < cols; c++) {
            if (out[c * rows + r] !== call * 10_000 + r * cols + c) assert.fail(`call ${call}: [${r}, ${c}] of ${rows} x ${cols} is ${out[c * rows + r]}`);
          }
        }
      }
    });
  }

  test('a chunk that traps makes the call throw; the next call still runs and is right', () => {
    const { threads, heap } = setup(1);
    const outOfBounds = 1024 * 65536 * 4; // past the memory's maximum
    assert.throws(() => threads.run('transpose', (part, parts) => [0, 4, outOfBounds, 4, ...partRange(4, parts, part), 4]), /out of bounds|failed on a helper/);
    for (let i = 0; i < 16; i++) heap[i] = i;
    assert.deepEqual([...transpose(threads, heap, 4, 4, 64)], [0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15]);
  });

  test('without helpers a call is one part on the calling thread', () => {
    const { threads, heap } = setup(0);
    assert.equal(threads.parts, 1);
    for (let i = 0; i < 6; i++) heap[i] = i;
    assert.deepEqual([...transpose(threads, heap, 2, 3, 32)], [0, 3, 1, 4, 2, 5]);
  });
});
