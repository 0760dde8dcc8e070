// AssemblyScript source of the wasm SIMD training kernels: the prediction vectors u_hat (eq. 2) forward and
// backward, routing by agreement (procedure 1) forward and backward and Adam (train/backends/wasm-capsule-kernels.ts), and
// the data movement around XNNPACK in the convolution gradients (train/backends/wasm-kernels.ts), and two of tfjs's own
// ops that its wasm backend runs on one thread (train/backends/wasm-elementwise.ts). train/backends/wasm-simd.ts loads
// the module and shares each call between threads: every kernel takes the range of its work it should do.
//
// The module imports tfjs-backend-wasm's own memory, so every pointer below is a byte offset of a tensor on that
// heap (or of scratch the caller allocated there): the kernels read and write the tensors in place, with no copy.
// It has no data segment and no allocator, so it never writes anywhere it was not given a pointer to
// (test/e2e/wasm-capsule-kernels.test.ts checks the built binary for that).
//
// Routing (routingForward/routingBackward) is one of three implementations of core/routing.ts's `dynamic`
// algorithm, which must agree: the TensorFlow.js one (packages/capsnet/src/model/routing.ts, whose composite ops
// are this gradient's reference in test/e2e/wasm-capsule-kernels.test.ts) and the ONNX one unrolled into every export
// (packages/capsnet/src/export/routing.ts). Only `dynamic` has a kernel here; another algorithm runs as composite
// tfjs ops.
//
// Built by `npm run build:kernels` (packages/capsnet/scripts/build-kernels.mjs) into two binaries that differ only
// in the memory they import: shared (tfjs's multi-threaded build) and not shared (its single-threaded build).
//
// Layouts are row-major; all values float32. The inner loops run over the last axis in f32x4 lanes with a scalar
// tail, so any size works; the paper's sizes (8-D u, 16-D v, 160-wide u_hat rows) have no tail.

// ------------------------------------------------------------------------------------------------ helpers

@inline function at(base: usize, index: i32): usize {
  return base + (<usize>index << 2);
}

@inline function get(base: usize, index: i32): f32 {
  return load<f32>(at(base, index));
}

@inline function set(base: usize, index: i32, value: f32): void {
  store<f32>(at(base, index), value);
}

@inline function hsum(x: v128): f32 {
  return f32x4.extract_lane(x, 0) + f32x4.extract_lane(x, 1) + f32x4.extract_lane(x, 2) + f32x4.extract_lane(x, 3);
}

/** sum_k a[k] b[k], k < n. */
@inline function dot(a: usize, b: usize, n: i32): f32 {
  let acc = f32x4.splat(0);
  let k = 0;
  for (; k + 4 <= n; k += 4) acc = f32x4.add(acc, f32x4.mul(v128.load(at(a, k)), v128.load(at(b, k))));
  let sum = hsum(acc);
  for (; k < n; k++) sum += get(a, k) * get(b, k);
  return sum;
}

/** y[k] += alpha x[k], k < n. */
@inline function axpy(y: usize, alpha: f32, x: usize, n: i32): void {
  const a = f32x4.splat(alpha);
  let k = 0;
  for (; k + 4 <= n; k += 4) v128.store(at(y, k), f32x4.add(v128.load(at(y, k)), f32x4.mul(a, v128.load(at(x, k)))));
  for (; k < n; k++) set(y, k, get(y, k) + alpha * get(x, k));
}

/** y[k] = 0, k < n. */
@inline function zero(y: usize, n: i32): void {
  memory.fill(y, 0, <usize>n << 2);
}

// --------------------------------------------------------------------------------------- u_hat (eq. 2)

/**
 * u_hat[n, i, :] = u[n, i, :] . W[i] for u [N, I, P], W [I, P, K] -> uHat [N, I, K] (K = classes * digitDim).
 * i is the outer loop, so W[i] (P * K floats, 5 KB in the paper) stays in L1 across the batch.
 */
export function predictionVectors(u: usize, W: usize, uHat: usize, N: i32, I: i32, P: i32, K: i32): void {
  for (let i = 0; i < I; i++) {
    const w = at(W, i * P * K);
    for (let n = 0; n < N; n++) {
      const row = at(uHat, (n * I + i) * K);
      const ui = at(u, (n * I + i) * P);
      let k = 0;
      for (; k + 4 <= K; k += 4) {
        let acc = f32x4.splat(0);
        for (let p = 0; p < P; p++) acc = f32x4.add(acc, f32x4.mul(f32x4.splat(get(ui, p)), v128.load(at(w, p * K + k))));
        v128.store(at(row, k), acc);
      }
      for (; k < K; k++) {
        let acc: f32 = 0;
        for (let p = 0; p < P; p++) acc += get(ui, p) * get(w, p * K + k);
        set(row, k, acc);
      }
    }
  }
}

/**
 * The gradient of predictionVectors: from dUHat [N, I, K],
 *   dU[n, i, p] = sum_k dUHat[n, i, k] W[i, p, k]      and      dW[i, p, k] = sum_n u[n, i, p] dUHat[n, i, k],
 * for the capsules i0 <= i < i1 (threads split the capsules: each writes its own rows of dU and dW).
 */
export function predictionVectorsGrad(u: usize, W: usize, dUHat: usize, dU: usize, dW: usize, N: i32, I: i32, P: i32, K: i32, i0: i32, i1: i32): void {
  for (let i = i0; i < i1; i++) {
    const w = at(W, i * P * K);
    const dw = at(dW, i * P * K);
    zero(dw, P * K);
    for (let n = 0; n < N; n++) {
      const g = at(dUHat, (n * I + i) * K);
      const ui = at(u, (n * I + i) * P);
      const dui = at(dU, (n * I + i) * P);
      for (let p = 0; p < P; p++) {
        set(dui, p, dot(g, at(w, p * K), K));
        axpy(at(dw, p * K), get(ui, p), g, K);
      }
    }
  }
}

// -------------------------------------------------------------------------------- routing (procedure 1)

// Per-example scratch, laid out by routingLayout from one block the caller allocates (routingScratchFloats).
let bLogits: usize = 0; // b [I, J]
let coupling: usize = 0; // c_r [R][I, J]
let sums: usize = 0; // s_r [R][J, D]
let caps: usize = 0; // v_r [R][J, D]
let gradV: usize = 0; // [J, D]
let gradVPrev: usize = 0; // [J, D]
let gradS: usize = 0; // [J, D]
let gradB: usize = 0; // [I, J]
let gradBNext: usize = 0; // [I, J]
let gradC: usize = 0; // [J]

/** Floats of scratch routingForward/routingBackward need for one call. */
export function routingScratchFloats(I: i32, J: i32, D: i32, R: i32): i32 {
  return (3 + R) * I * J + (2 * R + 3) * J * D + J;
}

function routingLayout(scratch: usize, I: i32, J: i32, D: i32, R: i32): void {
  const IJ = I * J, JD = J * D;
  bLogits = scratch;
  coupling = at(bLogits, IJ);
  sums = at(coupling, R * IJ);
  caps = at(sums, R * JD);
  gradV = at(caps, R * JD);
  gradVPrev = at(gradV, JD);
  gradS = at(gradVPrev, JD);
  gradB = at(gradS, JD);
  gradBNext = at(gradB, IJ);
  gradC = at(gradBNext, IJ);
}

/** v = |s|^2 / (1 + |s|^2) s / sqrt(|s|^2 + eps) for each D-vector (eq. 1, as model/capsnet.ts's squash). */
function squash(s: usize, v: usize, J: i32, D: i32, eps: f64): void {
  for (let j = 0; j < J; j++) {
    const sj = at(s, j * D);
    const q = <f64>dot(sj, sj, D);
    const f = <f32>(q / (1 + q) / Math.sqrt(q + eps));
    const vj = at(v, j * D);
    for (let d = 0; d < D; d++) set(vj, d, f * get(sj, d));
  }
}

/**
 * The gradient of squash: with q = |s|^2, r = sqrt(q + eps), f(q) = q / ((1 + q) r),
 * dL/ds = f gv + 2 f'(q) (s . gv) s, f'(q) = (2 eps + q - q^2) / (2 r^3 (1 + q)^2) (finite at s = 0).
 */
function squashBackward(s: usize, gv: usize, gs: usize, J: i32, D: i32, eps: f64): void {
  for (let j = 0; j < J; j++) {
    const sj = at(s, j * D), gvj = at(gv, j * D), gsj = at(gs, j * D);
    const q = <f64>dot(sj, sj, D);
    const sg = <f64>dot(sj, gvj, D);
    const r = Math.sqrt(q + eps);
    const f = <f32>(q / ((1 + q) * r));
    const fp2sg = <f32>(2 * sg * (2 * eps + q - q * q) / (2 * r * r * r * (1 + q) * (1 + q)));
    for (let d = 0; d < D; d++) set(gsj, d, f * get(gvj, d) + fp2sg * get(sj, d));
  }
}

/**
 * All iterations for one example whose u_hat starts at u ([I, J, D]): fills c_r, s_r, v_r for every r. b starts at
 * 0, so c_0 = 1/J exactly (softmax(0)). Iteration r's agreement update (b += u_hat . v_r) and iteration r+1's
 * softmax and weighted sum share one pass over u_hat.
 */
function routeExample(u: usize, I: i32, J: i32, D: i32, R: i32, eps: f64): void {
  const IJ = I * J, JD = J * D;
  zero(bLogits, IJ);
  const c0 = coupling, s0 = sums;
  const invJ: f32 = 1 / <f32>J;
  for (let e = 0; e < IJ; e++) set(c0, e, invJ);
  zero(s0, JD);
  for (let i = 0; i < I; i++) axpy(s0, 1, at(u, i * JD), JD);
  for (let e = 0; e < JD; e++) set(s0, e, get(s0, e) * invJ);
  for (let r = 0; r < R; r++) {
    const s = at(sums, r * JD), v = at(caps, r * JD);
    squash(s, v, J, D, eps);
    if (r + 1 == R) break;
    const c = at(coupling, (r + 1) * IJ), sNext = at(sums, (r + 1) * JD);
    zero(sNext, JD);
    for (let i = 0; i < I; i++) {
      const row = at(u, i * JD), bi = at(bLogits, i * J), ci = at(c, i * J);
      let max = -Infinity;
      for (let j = 0; j < J; j++) {
        const logit = get(bi, j) + dot(at(row, j * D), at(v, j * D), D);
        set(bi, j, logit);
        if (<f64>logit > max) max = <f64>logit;
      }
      let total: f64 = 0;
      for (let j = 0; j < J; j++) {
        const e = Math.exp(<f64>get(bi, j) - max);
        set(ci, j, <f32>e);
        total += e;
      }
      const inv = 1 / total;
      for (let j = 0; j < J; j++) {
        const cij = <f32>(<f64>get(ci, j) * inv);
        set(ci, j, cij);
        axpy(at(sNext, j * D), cij, at(row, j * D), D);
      }
    }
  }
}

/** Forward: uHat [N, I, J, D] -> v [N, J, D] and the last iteration's c [N, I, J]. */
export function routingForward(uHat: usize, v: usize, c: usize, scratch: usize, N: i32, I: i32, J: i32, D: i32, R: i32, eps: f64): void {
  routingLayout(scratch, I, J, D, R);
  const IJ = I * J, JD = J * D;
  for (let n = 0; n < N; n++) {
    routeExample(at(uHat, n * I * JD), I, J, D, R, eps);
    memory.copy(at(v, n * JD), at(caps, (R - 1) * JD), <usize>JD << 2);
    memory.copy(at(c, n * IJ), at(coupling, (R - 1) * IJ), <usize>IJ << 2);
  }
}

/**
 * Backward, per example, from the recomputed iterations (b_{r+1} = b_r + a_r with a_r = u . v_r, c_r = softmax(b_r),
 * s_r = sum_i c_r u, v_r = squash(s_r)), last iteration first:
 *   gs = squash'(s_r) gv_r;  gc = u . gs (+ dCoupling at the last);  du += c_r gs;
 *   gb_r = c_r (gc - sum_j c_r gc) + gb_{r+1};  then, for r > 0, gb_r is the gradient of a_{r-1}:
 *   du += gb_r v_{r-1} and gv_{r-1} = sum_i gb_r u (in the same pass over u).
 */
export function routingBackward(
  uHat: usize, dV: usize, dC: usize, dU: usize, scratch: usize, N: i32, I: i32, J: i32, D: i32, R: i32, eps: f64,
): void {
  routingLayout(scratch, I, J, D, R);
  const IJ = I * J, JD = J * D;
  for (let n = 0; n < N; n++) {
    const u = at(uHat, n * I * JD), du = at(dU, n * I * JD);
    routeExample(u, I, J, D, R, eps);
    zero(du, I * JD);
    let gv = gradV, gvPrev = gradVPrev, gb = gradB, gbNext = gradBNext;
    memory.copy(gv, at(dV, n * JD), <usize>JD << 2);
    for (let r = R - 1; r >= 0; r--) {
      squashBackward(at(sums, r * JD), gv, gradS, J, D, eps);
      const c = at(coupling, r * IJ);
      const vPrev = r > 0 ? at(caps, (r - 1) * JD) : 0;
      if (r > 0) zero(gvPrev, JD);
      for (let i = 0; i < I; i++) {
        const row = at(u, i * JD), dRow = at(du, i * JD), ci = at(c, i * J);
        const gbi = at(gb, i * J), gbNexti = at(gbNext, i * J);
        let cgc: f32 = 0;
        for (let j = 0; j < J; j++) {
          let g = dot(at(row, j * D), at(gradS, j * D), D);
          if (r == R - 1) g += get(at(dC, n * IJ + i * J), j);
          set(gradC, j, g);
          cgc += get(ci, j) * g;
        }
        for (let j = 0; j < J; j++) {
          const cij = get(ci, j);
          let g = cij * (get(gradC, j) - cgc);
          if (r < R - 1) g += get(gbNexti, j);
          set(gbi, j, g);
          axpy(at(dRow, j * D), cij, at(gradS, j * D), D);
          if (r > 0) {
            axpy(at(dRow, j * D), g, at(vPrev, j * D), D);
            axpy(at(gvPrev, j * D), g, at(row, j * D), D);
          }
        }
      }
      const t = gv; gv = gvPrev; gvPrev = t;
      const tb = gb; gb = gbNext; gbNext = tb;
    }
  }
}

// --------------------------------------------------------------- data movement for the convolution gradients

@inline function transposeTile(src: usize, srcStride: i32, dst: usize, dstStride: i32): void {
  const a = v128.load(src), b = v128.load(at(src, srcStride));
  const c = v128.load(at(src, 2 * srcStride)), d = v128.load(at(src, 3 * srcStride));
  const ab01 = v128.shuffle<f32>(a, b, 0, 4, 1, 5), ab23 = v128.shuffle<f32>(a, b, 2, 6, 3, 7);
  const cd01 = v128.shuffle<f32>(c, d, 0, 4, 1, 5), cd23 = v128.shuffle<f32>(c, d, 2, 6, 3, 7);
  v128.store(dst, v128.shuffle<f32>(ab01, cd01, 0, 1, 4, 5));
  v128.store(at(dst, dstStride), v128.shuffle<f32>(ab01, cd01, 2, 3, 6, 7));
  v128.store(at(dst, 2 * dstStride), v128.shuffle<f32>(ab23, cd23, 0, 1, 4, 5));
  v128.store(at(dst, 3 * dstStride), v128.shuffle<f32>(ab23, cd23, 2, 3, 6, 7));
}

/**
 * dst[c * dstStride + r] = src[r * srcStride + c] for rows r0 <= r < r1 and c < cols: a strided 2-D transpose, in
 * 16x16 blocks (both sides stay in cache) of 4x4 SIMD tiles.
 */
export function transpose(src: usize, srcStride: i32, dst: usize, dstStride: i32, r0: i32, r1: i32, cols: i32): void {
  const B = 16;
  for (let rb = r0; rb < r1; rb += B) {
    const re = min(r1, rb + B);
    for (let cb = 0; cb < cols; cb += B) {
      const ce = min(cols, cb + B);
      let r = rb;
      for (; r + 4 <= re; r += 4) {
        let c = cb;
        for (; c + 4 <= ce; c += 4) transposeTile(at(src, r * srcStride + c), srcStride, at(dst, c * dstStride + r), dstStride);
        for (; c < ce; c++) {
          for (let k = 0; k < 4; k++) set(dst, c * dstStride + r + k, get(src, (r + k) * srcStride + c));
        }
      }
      for (; r < re; r++) {
        for (let c = cb; c < ce; c++) set(dst, c * dstStride + r, get(src, r * srcStride + c));
      }
    }
  }
}

/**
 * dst[b] = src[b]^T for the row-major [rows, cols] matrices b0 <= b < b1 of a batch laid end to end (src [B, rows,
 * cols] -> dst [B, cols, rows]): the layout changes between tfjs's NHWC / HWIO and ONNX's NCHW / OIHW
 * (train/backends/ort-conv.ts), split over the batch.
 */
export function transposeBatch(src: usize, dst: usize, rows: i32, cols: i32, b0: i32, b1: i32): void {
  const size = <usize>rows * <usize>cols;
  for (let b = b0; b < b1; b++) transpose(src + <usize>b * size * 4, cols, dst + <usize>b * size * 4, rows, 0, rows, cols);
}

/**
 * colT[(kh, kw, ci), (n, oh, ow)] = xT[ci][n0 + n][oh sh + kh - pt][ow sw + kw - pl] (zero outside the image), for
 * images n0 <= n < n0 + nb and the rows c0 <= t < c1 of colT, t = (kh KW + kw) C + ci (im2col, channel-major: the
 * operand of wasm-kernels.ts's filter-gradient GEMM). Each row is OW-long runs of one image row, copied whole at
 * stride 1.
 */
export function im2colT(xT: usize, colT: usize, N: i32, H: i32, W: i32, C: i32, OH: i32, OW: i32, KH: i32, KW: i32,
  sh: i32, sw: i32, pt: i32, pl: i32, n0: i32, nb: i32, c0: i32, c1: i32): void {
  const Mc = nb * OH * OW;
  for (let t = c0; t < c1; t++) {
    const c = t % C, k = t / C;
    const kh = k / KW, kw = k % KW;
    // Output columns whose input column ow sw + kw - pl lies in [0, W).
    const lo = max(0, (pl - kw + sw - 1) / sw);
    const hi = max(lo, min(OW, (W - 1 + pl - kw) >= 0 ? (W - 1 + pl - kw) / sw + 1 : 0));
    for (let nl = 0; nl < nb; nl++) {
      const img = (c * N + n0 + nl) * H * W;
      for (let oh = 0; oh < OH; oh++) {
        const d = t * Mc + (nl * OH + oh) * OW;
        const ih = oh * sh + kh - pt;
        if (ih < 0 || ih >= H || lo >= hi) {
          zero(at(colT, d), OW);
          continue;
        }
        if (lo > 0) zero(at(colT, d), lo);
        if (hi < OW) zero(at(colT, d + hi), OW - hi);
        const src = img + ih * W + kw - pl;
        if (sw == 1) {
          memory.copy(at(colT, d + lo), at(xT, src + lo), <usize>(hi - lo) << 2);
        } else {
          for (let ow = lo; ow < hi; ow++) set(colT, d + ow, get(xT, src + ow * sw));
        }
      }
    }
  }
}

/**
 * x [N, H, W, C] -> xp [C, Hc, Wc, N] with pixel (h, w) at (h + pt, w + pl), for the input rows h0 <= h < h1 (the
 * layout of wasm-kernels.ts's filterGradViaConv; the caller zeroes xp first).
 */
export function nhwcToChwn(x: usize, xp: usize, N: i32, H: i32, W: i32, C: i32, Hc: i32, Wc: i32, pt: i32, pl: i32, h0: i32, h1: i32): void {
  for (let h = h0; h < h1; h++) {
    const hc = h + pt;
    if (hc < 0 || hc >= Hc) continue;
    for (let w = 0; w < W; w++) {
      const wc = w + pl;
      if (wc < 0 || wc >= Wc) continue;
      transpose(at(x, (h * W + w) * C), H * W * C, at(xp, (hc * Wc + wc) * N), Hc * Wc * N, 0, N, C);
    }
  }
}

/**
 * dxT[ci][n][h][w] += the entries of colT[(kh, kw, ci), (n, oh, ow)] that land on (h, w) = (oh sh + kh - pt,
 * ow sw + kw - pl), for images n0 <= n < n0 + nb and channels c0 <= ci < c1 (col2im, channel-major).
 */
export function col2imT(colT: usize, dxT: usize, N: i32, H: i32, W: i32, C: i32, OH: i32, OW: i32, KH: i32, KW: i32,
  sh: i32, sw: i32, pt: i32, pl: i32, n0: i32, nb: i32, c0: i32, c1: i32): void {
  const Mc = nb * OH * OW, plane = OH * OW;
  for (let c = c0; c < c1; c++) {
    for (let nl = 0; nl < nb; nl++) {
      const img = at(dxT, (c * N + n0 + nl) * H * W);
      for (let kh = 0; kh < KH; kh++) {
        for (let kw = 0; kw < KW; kw++) {
          // Output columns whose input column ow sw + kw - pl lies in [0, W).
          const owLo = max(0, <i32>Math.ceil(<f64>(pl - kw) / <f64>sw));
          const owHi = max(owLo, min(OW, <i32>Math.floor(<f64>(W - 1 + pl - kw) / <f64>sw) + 1));
          if (owLo >= owHi) continue;
          const src = at(colT, ((kh * KW + kw) * C + c) * Mc + nl * plane);
          for (let oh = 0; oh < OH; oh++) {
            const ih = oh * sh + kh - pt;
            if (ih < 0 || ih >= H) continue;
            const row = at(src, oh * OW), dst = at(img, ih * W + kw - pl);
            for (let ow = owLo; ow < owHi; ow++) set(dst, ow * sw, get(dst, ow * sw) + get(row, ow));
          }
        }
      }
    }
  }
}

/**
 * dx[n, h, :, :] = the sum of col[(nl, oh, ow), (kh, kw, :)] over the (oh, ow, kh, kw) that land on row h = oh sh + kh -
 * pt, column ow sw + kw - pl, for the rows u0 <= u < u1 of the images n0..n0+nb-1 (u = nl H + h, n = n0 + nl) of N: col2im
 * in tfjs's NHWC layout, a convolution's input gradient from col = dy W^T (train/backends/ort-conv.ts). Each row of dx
 * is zeroed, then gathers its terms: for one (oh, ow, kh), consecutive kw land on consecutive columns, so each term
 * is one contiguous run of col (KW x C floats, in the HWIO filter's order) added to one contiguous run of the row.
 * Splitting by output rows keeps a part's writes in one row and its reads in long runs.
 */
export function col2imRows(col: usize, dx: usize, N: i32, H: i32, W: i32, C: i32, OH: i32, OW: i32, KH: i32, KW: i32,
  sh: i32, sw: i32, pt: i32, pl: i32, n0: i32, nb: i32, u0: i32, u1: i32): void {
  const KK = KH * KW * C;
  for (let u = u0; u < u1; u++) {
    const nl = u / H, h = u % H;
    const row = at(dx, ((n0 + nl) * H + h) * W * C);
    zero(row, W * C);
    for (let oh = 0; oh < OH; oh++) {
      const kh = h + pt - oh * sh;
      if (kh < 0 || kh >= KH) continue;
      for (let ow = 0; ow < OW; ow++) {
        const iw = ow * sw - pl;
        const kwLo = max(0, -iw), kwHi = min(KW, W - iw);
        if (kwLo >= kwHi) continue;
        const src = at(col, ((nl * OH + oh) * OW + ow) * KK + (kh * KW + kwLo) * C);
        axpy(at(row, (iw + kwLo) * C), 1, src, (kwHi - kwLo) * C);
      }
    }
  }
}

// ----------------------------------------------------------------------------------------------- Adam

/**
 * m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;  pOut = p - lr m / (sqrt(v) + eps)  (train/adam.ts's update),
 * with m and v updated in place; n values.
 */
export function adam(p: usize, g: usize, m: usize, v: usize, pOut: usize, n: i32, lr: f32, beta1: f32, beta2: f32, epsilon: f32): void {
  const b1 = f32x4.splat(beta1), a1 = f32x4.splat(1 - beta1);
  const b2 = f32x4.splat(beta2), a2 = f32x4.splat(1 - beta2);
  const rate = f32x4.splat(lr), eps = f32x4.splat(epsilon);
  let k = 0;
  for (; k + 4 <= n; k += 4) {
    const gk = v128.load(at(g, k));
    const mk = f32x4.add(f32x4.mul(b1, v128.load(at(m, k))), f32x4.mul(a1, gk));
    const vk = f32x4.add(f32x4.mul(b2, v128.load(at(v, k))), f32x4.mul(a2, f32x4.mul(gk, gk)));
    v128.store(at(m, k), mk);
    v128.store(at(v, k), vk);
    const step = f32x4.div(f32x4.mul(rate, mk), f32x4.add(f32x4.sqrt(vk), eps));
    v128.store(at(pOut, k), f32x4.sub(v128.load(at(p, k)), step));
  }
  for (; k < n; k++) {
    const gk = get(g, k);
    const mk = beta1 * get(m, k) + (1 - beta1) * gk;
    const vk = beta2 * get(v, k) + (1 - beta2) * gk * gk;
    set(m, k, mk);
    set(v, k, vk);
    set(pOut, k, get(p, k) - lr * mk / (Mathf.sqrt(vk) + epsilon));
  }
}

// ------------------------------------------------------------------ element-wise ops tfjs runs on one thread

/**
 * dst[c] = sum over r < rows of src[r * cols + c], for the columns c0 <= c < c1 of a row-major [rows, cols] matrix:
 * tfjs's Sum over leading axes (a bias gradient: dy [N, H, W, C] summed to [C]). Sixteen columns at a time in four
 * f32x4 accumulators, rows in order, so each 64-byte line of src is read once.
 */
export function columnSums(src: usize, dst: usize, rows: i32, cols: i32, c0: i32, c1: i32): void {
  let c = c0;
  for (; c + 16 <= c1; c += 16) {
    let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
    for (let r = 0; r < rows; r++) {
      const row = at(src, r * cols + c);
      a0 = f32x4.add(a0, v128.load(row));
      a1 = f32x4.add(a1, v128.load(row, 16));
      a2 = f32x4.add(a2, v128.load(row, 32));
      a3 = f32x4.add(a3, v128.load(row, 48));
    }
    const out = at(dst, c);
    v128.store(out, a0);
    v128.store(out, a1, 16);
    v128.store(out, a2, 32);
    v128.store(out, a3, 48);
  }
  for (; c < c1; c++) {
    let sum: f32 = 0;
    for (let r = 0; r < rows; r++) sum += get(src, r * cols + c);
    set(dst, c, sum);
  }
}

/** out[k] = a[k] * b[k], k < n: tfjs's Multiply of two tensors of one shape (the ReLU gradient dy * step(x)). */
export function multiply(a: usize, b: usize, out: usize, n: i32): void {
  let k = 0;
  for (; k + 4 <= n; k += 4) v128.store(at(out, k), f32x4.mul(v128.load(at(a, k)), v128.load(at(b, k))));
  for (; k < n; k++) set(out, k, get(a, k) * get(b, k));
}
