// Seeded values and the error measure the kernel tests share.
import assert from 'node:assert/strict';

/** mulberry32: small seeded generator, so every run draws the same shapes and values. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** n seeded values in [-1, 1). */
export function values(n: number, seed: number): Float32Array {
  const r = rng(seed);
  return Float32Array.from({ length: n }, () => r() * 2 - 1);
}

/** max|a - b| / max|b|; fails when b is all zeros (the comparison would test nothing). */
export function relErr(a: Float32Array, b: Float32Array): number {
  assert.equal(a.length, b.length);
  let diff = 0,
    scale = 0;
  for (let i = 0; i < a.length; i++) {
    diff = Math.max(diff, Math.abs(a[i]! - b[i]!));
    scale = Math.max(scale, Math.abs(b[i]!));
  }
  assert.ok(scale > 0, 'reference is all zeros: the case tests nothing');
  return diff / scale;
}
