/**
 * Separable resampling of HxWxC float images with a triangle (bilinear) filter whose support widens by the
 * shrink factor, so shrinking averages every source pixel (anti-aliased, like an area filter) and enlarging
 * interpolates instead of copying blocks. Pure TypeScript: runs in Node and the browser.
 */

interface Taps {
  start: number;
  weights: Float64Array;
}

/** For each output index, the first source index and the normalised weights of the sources it covers. */
function filterTaps(src: number, dst: number): Taps[] {
  const scale = src / dst;
  const support = Math.max(1, scale); // half-width of the triangle, in source pixels
  const taps: Taps[] = [];
  for (let o = 0; o < dst; o++) {
    const centre = (o + 0.5) * scale;
    const start = Math.max(0, Math.floor(centre - support));
    const end = Math.min(src, Math.ceil(centre + support));
    const weights = new Float64Array(Math.max(0, end - start));
    let total = 0;
    for (let i = start; i < end; i++) {
      const w = Math.max(0, 1 - Math.abs(i + 0.5 - centre) / support);
      weights[i - start] = w;
      total += w;
    }
    if (total === 0) {
      // A source narrower than the filter: take the nearest pixel.
      const nearest = Math.min(src - 1, Math.max(0, Math.floor(centre)));
      taps.push({ start: nearest, weights: Float64Array.of(1) });
      continue;
    }
    for (let k = 0; k < weights.length; k++) weights[k]! /= total;
    taps.push({ start, weights });
  }
  return taps;
}

/**
 * Resize `pixels` (row-major h x w x c) to outH x outW x c. An exact copy when the size already matches.
 * Values are clamped to [0, 1] afterwards (the triangle filter never overshoots, but float error can).
 */
export function resample(pixels: Float32Array, h: number, w: number, c: number, outH: number, outW: number): Float32Array {
  if (h === outH && w === outW) return pixels.slice();
  const xs = filterTaps(w, outW);
  const ys = filterTaps(h, outH);
  const rows = new Float32Array(h * outW * c); // width first
  for (let y = 0; y < h; y++) {
    for (let ox = 0; ox < outW; ox++) {
      const { start, weights } = xs[ox]!;
      for (let k = 0; k < c; k++) {
        let acc = 0;
        for (let t = 0; t < weights.length; t++) acc += weights[t]! * pixels[(y * w + start + t) * c + k]!;
        rows[(y * outW + ox) * c + k] = acc;
      }
    }
  }
  const out = new Float32Array(outH * outW * c);
  const stride = outW * c;
  for (let oy = 0; oy < outH; oy++) {
    const { start, weights } = ys[oy]!;
    for (let i = 0; i < stride; i++) {
      let acc = 0;
      for (let t = 0; t < weights.length; t++) acc += weights[t]! * rows[(start + t) * stride + i]!;
      out[oy * stride + i] = Math.min(1, Math.max(0, acc));
    }
  }
  return out;
}
