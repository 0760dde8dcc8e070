/**
 * How precisely a test set measures an error rate: the 95% interval of one measured proportion, and the smallest
 * difference between two models' errors that a test set of that size can tell apart. Used by the experiments'
 * reports and `npm start` to say which of the paper's gaps a run can resolve. No imports: cheap to load anywhere.
 */

/** z for a two-sided 95% interval. */
export const Z95 = 1.959964;

/**
 * Wilson score interval (Wilson 1927) of a proportion: `k` events (errors) in `n` trials (test images), at 95% by
 * default. Returns fractions [low, high] in [0, 1]; n = 0 gives [0, 1]. Better than the normal approximation near 0,
 * where MNIST errors live (25 errors in 10,000: [0.17%, 0.37%]).
 */
export function wilsonInterval(k: number, n: number, z = Z95): [number, number] {
  if (n <= 0) return [0, 1];
  const p = k / n;
  const z2 = z * z;
  const centre = (p + z2 / (2 * n)) / (1 + z2 / n);
  const half = (z / (1 + z2 / n)) * Math.sqrt((p * (1 - p)) / n + z2 / (4 * n * n));
  return [Math.max(0, centre - half), Math.min(1, centre + half)];
}

/**
 * The smallest difference between two independent models' error rates, both near `p`, that `n` test images show at
 * 95% (normal approximation: z * sqrt(2 p (1 - p) / n)). At the paper's 0.3% on the 10,000 MNIST test digits this
 * is 0.15 points: one run per model cannot separate Table 1's 0.25% from 0.35%; the paper's means over seeds can.
 */
export function resolvableDifference(p: number, n: number, z = Z95): number {
  return n > 0 ? z * Math.sqrt((2 * p * (1 - p)) / n) : 1;
}

/** "0.25% (95% interval 0.17-0.37%, 10,000 images)" for an error rate measured on n images. */
export function errorWithInterval(error: number, n: number): string {
  const [low, high] = wilsonInterval(Math.round(error * n), n);
  return `${(100 * error).toFixed(2)}% (95% interval ${(100 * low).toFixed(2)}-${(100 * high).toFixed(2)}%, ${n.toLocaleString('en-US')} images)`;
}
