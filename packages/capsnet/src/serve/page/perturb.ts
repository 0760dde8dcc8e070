/**
 * The capsule dimensions: 16 sliders that perturb the winning capsule (decoded live by app.ts), and the paper's
 * figure 4 for the current digit: each dimension of the winning capsule (the others masked to zero) perturbed by
 * -0.25 ... +0.25 in steps of 0.05 and decoded with the model's decoder, here in the page: a digitDim x 11 grid.
 *
 * Slider labels: what each dimension does is measured by `capsnet experiment perturb` (experiments/dimensions.ts:
 * image statistics of the -0.25 and +0.25 reconstructions, labelled in the paper's terms) into dimensions.json, which
 * the server passes on in GET /v1/model (`capsnet serve --dimensions FILE`, or a pretrained model's own). Each slider
 * is named with the label for the current digit's class, else the overall label, else "dimension k" when the server
 * has none. Beside it, the size of the dimension's effect for the current digit, computed here from the grid (mean
 * |pixel change| between the -0.25 and +0.25 reconstructions, and its rank). Text only: labels are data.
 */
import { type DimensionFindings, dimensionLabel } from '@capsnet-onnx/core';
import type { ModelMetadata } from '@capsnet-onnx/runtime/web';
import { context2d, el, rgba } from './dom.ts';

export const SLIDER_MIN = -0.25;
export const SLIDER_MAX = 0.25;
export const SLIDER_STEP = 0.05;
/** The figure's columns: -0.25, -0.20, ..., +0.25 (11 steps), as experiments/perturb.ts's PERTURB_STEPS. */
export const PERTURB_STEPS = Array.from({ length: 11 }, (_, s) => Math.round((SLIDER_MIN + s * SLIDER_STEP) * 100) / 100);

/** Where the sliders' labels come from (or how to get them), shown under the sliders. */
export function labelsNote(findings: DimensionFindings | null): string {
  if (!findings) {
    return (
      'The server was given no measured meaning per dimension, so the sliders are named by number. ' +
      '`npx capsnet experiment perturb --model model.onnx --out DIR` measures what each dimension does (DIR/dimensions.json, ' +
      "with the paper's figure 4 per digit); serve it with `capsnet serve model.onnx --dimensions DIR/dimensions.json`. " +
      'The effect shown here is the mean |pixel change| between −0.25 and +0.25 for the current digit.'
    );
  }
  const digits = findings.perClass.reduce((n, c) => n + c.digits, 0);
  return (
    `Labels: what each dimension was measured to do for the current digit's class (\`capsnet experiment perturb\` on ${digits} ` +
    `${findings.dataset} test digits, ${findings.model}: centroid shift, width, height, stroke width, slant and locality ` +
    'of the −0.25 and +0.25 reconstructions; hover a label for the numbers). Δ: the same change for the current digit.'
  );
}

/** The capsule set with only class `cls`'s capsule, its dimensions moved by `deltas`. */
export function maskedCapsule(capsules: Float32Array, cls: number, digitDim: number, numClasses: number, deltas?: ArrayLike<number>): Float32Array {
  const masked = new Float32Array(numClasses * digitDim);
  for (let d = 0; d < digitDim; d++) masked[cls * digitDim + d] = capsules[cls * digitDim + d]! + (deltas?.[d] ?? 0);
  return masked;
}

export interface Figure4 {
  cls: number;
  /** digitDim * 11 reconstructions, row d = dimension d, column s = PERTURB_STEPS[s]. */
  cells: Float32Array[];
  /** Per dimension: mean |pixel change| between the -0.25 and +0.25 reconstructions. */
  effects: number[];
}

/** Decode every perturbed copy of class `cls`'s capsule with `decode` (the model's decoder; batches of at most 64). */
export async function figure4(
  decode: (sets: Float32Array[]) => Promise<Float32Array[]>,
  capsules: Float32Array,
  cls: number,
  metadata: ModelMetadata,
): Promise<Figure4> {
  const { digitDim, numClasses } = metadata;
  const sets: Float32Array[] = [];
  for (let d = 0; d < digitDim; d++) {
    for (const step of PERTURB_STEPS) {
      const deltas = new Float32Array(digitDim);
      deltas[d] = step;
      sets.push(maskedCapsule(capsules, cls, digitDim, numClasses, deltas));
    }
  }
  const cells: Float32Array[] = [];
  for (let i = 0; i < sets.length; i += 64) cells.push(...(await decode(sets.slice(i, i + 64))));
  const last = PERTURB_STEPS.length - 1;
  const effects = Array.from({ length: digitDim }, (_, d) => {
    const lo = cells[d * PERTURB_STEPS.length]!;
    const hi = cells[d * PERTURB_STEPS.length + last]!;
    let sum = 0;
    for (let i = 0; i < lo.length; i++) sum += Math.abs(hi[i]! - lo[i]!);
    return sum / lo.length;
  });
  return { cls, cells, effects };
}

const stepLabel = (s: number) => (s === 0 ? '0' : `${s > 0 ? '+' : '−'}${Math.abs(s).toFixed(2)}`);

/** Render the grid into `box`: column headers (the steps), one row label per dimension, one canvas of all cells. */
export function renderFigure4(box: HTMLElement, figure: Figure4, metadata: ModelMetadata): void {
  const { inputHeight: h, inputWidth: w, inputChannels: c, digitDim } = metadata;
  const cols = PERTURB_STEPS.length;
  const canvas = el('canvas', { id: 'fig4', className: 'pixelated', 'aria-label': `figure 4: ${digitDim} dimensions × ${cols} perturbations, decoded` });
  canvas.width = cols * w;
  canvas.height = digitDim * h;
  const ctx = context2d(canvas);
  figure.cells.forEach((cell, i) => ctx.putImageData(rgba(cell, h, w, c), (i % cols) * w, Math.floor(i / cols) * h));
  const head = el('div', { className: 'fig4-cols' }, ...PERTURB_STEPS.map((s) => el('span', {}, stepLabel(s))));
  const labels = el('div', { className: 'fig4-rows' }, ...Array.from({ length: digitDim }, (_, d) => el('span', {}, String(d + 1))));
  const name = metadata.classLabels[figure.cls] ?? String(figure.cls);
  box.replaceChildren(
    el('div', { className: 'fig4' }, el('span', {}), head, labels, canvas),
    el(
      'p',
      { className: 'muted small' },
      `Each row perturbs one dimension of the ${name} capsule from −0.25 to +0.25 in steps of 0.05 (the paper's figure 4), decoded here.`,
    ),
  );
}

/**
 * The sliders, one per dimension, labelled "dimension k" with a slot for its measured effect; `onChange()` on every
 * move. Returns the deltas array the sliders write into.
 */
export function buildSliders(box: HTMLElement, digitDim: number, onChange: () => void): Float32Array {
  const deltas = new Float32Array(digitDim);
  box.replaceChildren();
  for (let d = 0; d < digitDim; d++) {
    const input = el('input', {
      type: 'range',
      min: SLIDER_MIN,
      max: SLIDER_MAX,
      step: SLIDER_STEP,
      value: 0,
      'data-dim': d,
      'aria-label': `capsule dimension ${d + 1}`,
    });
    const output = el('output', {}, '0.00');
    const row = el(
      'label',
      { className: 'slider' },
      el('span', { className: 'dim' }, `dimension ${d + 1}`),
      input,
      output,
      el('span', { className: 'effect muted' }, ''),
    );
    input.addEventListener('input', () => {
      const value = Math.round(Number(input.value) / SLIDER_STEP) * SLIDER_STEP;
      deltas[d] = value;
      output.textContent = `${value > 0 ? '+' : ''}${value.toFixed(2)}`;
      output.classList.toggle('moved', value !== 0);
      onChange();
    });
    box.append(row);
  }
  return deltas;
}

/** Name each slider with what its dimension does for class `cls` (null: no digit, the overall labels). */
export function labelSliders(box: HTMLElement, findings: DimensionFindings | null, cls: number | null): void {
  const own = findings?.perClass.find((c) => c.class === cls);
  box.querySelectorAll('.dim').forEach((slot, d) => {
    const label = dimensionLabel(findings, cls ?? -1, d);
    slot.textContent = label;
    const e = own?.dimensions[d] ?? findings?.overall[d];
    const px = (v: number) => `${v >= 0 ? '+' : ''}${v.toFixed(2)} px`;
    slot.setAttribute(
      'title',
      e
        ? `${label}: dimension ${d + 1}${own ? `, class ${own.class} (${own.digits} digits)` : ', all classes'}: shift ${px(e.shiftX)}, ${px(e.shiftY)}; ` +
            `width ${px(e.width)}, height ${px(e.height)}; stroke ${px(e.thickness)}; skew ${px(e.skew)}; ` +
            `ink ${(100 * e.ink).toFixed(0)}%; ${(100 * e.locality).toFixed(0)}% of the change in one window`
        : label,
    );
    box.querySelectorAll('input')[d]?.setAttribute('aria-label', `capsule dimension ${d + 1}: ${label}`);
  });
}

export function resetSliders(box: HTMLElement, deltas: Float32Array): void {
  deltas.fill(0);
  for (const input of Array.from(box.querySelectorAll('input'))) input.value = '0';
  for (const output of Array.from(box.querySelectorAll('output'))) {
    output.textContent = '0.00';
    output.classList.remove('moved');
  }
}

/** Show each dimension's measured effect for the current digit (empty when there is none). */
export function showEffects(box: HTMLElement, effects: number[] | null): void {
  const rank = effects ? effects.map((e, d) => [d, e] as const).sort((a, b) => b[1] - a[1]) : [];
  box.querySelectorAll('.effect').forEach((slot, d) => {
    const place = rank.findIndex(([k]) => k === d);
    slot.textContent = effects ? `Δ ${effects[d]!.toFixed(3)} · #${place + 1}` : '';
    slot.setAttribute('title', effects ? `mean |pixel change| between the −0.25 and +0.25 reconstructions: rank ${place + 1} of ${effects.length}` : '');
  });
}
