/**
 * Routing, shown: the coupling coefficients c_ij of routing by agreement (Sabour et al. 2017, eq. 3) from every
 * primary capsule i to one class capsule j, as a heat map over the input image.
 *
 * The model's `coupling` output is [N, I, R]: I primary capsules (1,152 = 6 x 6 positions x 32 types for the paper's
 * network on 28x28), R routed capsules (the classes, plus "none-of-the-above" when the model has it). Capsule i sits
 * at grid position (y, x) with type t where i = (y * cols + x) * types + t (export/capsnet-graph.ts). The map shows,
 * per position, the MEAN over the types of c_ij to the chosen class, on a diverging scale around 1/R (what routing
 * starts from): red where the position's capsules send more than that share to the class, blue where less.
 *
 * The coefficients come from the classifier itself (`classify(image, { coupling: true })`), on the same session
 * and device. `capsnet export` writes the last iteration's coefficients only, and the page says so.
 */
import type { Classifier, ModelMetadata } from '@capsnet-onnx/runtime/web';
import { context2d, el } from './dom.ts';

/** Where the primary capsules sit: `rows` x `cols` positions, `types` capsules (one per PrimaryCaps map) each. */
export interface PrimaryGrid {
  rows: number;
  cols: number;
  types: number;
}

/** One coupling output of one image: its graph name, its shape [1, I, R] as run, and its values. */
export interface CouplingMap {
  name: string;
  dims: number[];
  data: Float32Array;
}

/** What the page shows and the tests read: per position, the mean over types of c_ij to `cls`, row-major. */
export interface RoutingView {
  cls: number;
  grid: PrimaryGrid;
  outputs: string[];
  dims: number[];
  /** One array of rows*cols means per coupling output. */
  means: number[][];
}

const num = (value: unknown): number | undefined => (typeof value === 'number' && Number.isInteger(value) && value > 0 ? value : undefined);

/**
 * The grid of `capsules` primary capsules, from the model's recorded config (valid convolutions: conv1 stride 1,
 * PrimaryCaps stride `primaryStride`); null when the config does not account for exactly that many capsules.
 */
export function primaryGrid(metadata: ModelMetadata, capsules: number): PrimaryGrid | null {
  const c = metadata.config;
  const [k1, k2, stride, types] = [num(c.conv1Kernel), num(c.primaryKernel), num(c.primaryStride), num(c.primaryMaps)];
  if (!k1 || !k2 || !stride || !types) return null;
  const size = (n: number) => Math.floor((n - k1 + 1 - k2) / stride) + 1;
  const grid = { rows: size(metadata.inputHeight), cols: size(metadata.inputWidth), types };
  return grid.rows > 0 && grid.cols > 0 && grid.rows * grid.cols * types === capsules ? grid : null;
}

/** Per grid position, the mean over the capsule types of c_ij to class `cls` (map.data is [1, I, R]). */
export function positionMeans(map: CouplingMap, grid: PrimaryGrid, cls: number): number[] {
  const routed = map.dims[2]!;
  const means: number[] = [];
  for (let p = 0; p < grid.rows * grid.cols; p++) {
    let sum = 0;
    for (let t = 0; t < grid.types; t++) sum += map.data[(p * grid.types + t) * routed + cls]!;
    means.push(sum / grid.types);
  }
  return means;
}

/** The coupling coefficients of the classifier's model, one image at a time. */
export class RoutingSession {
  readonly outputs = ['coupling'];

  private constructor(
    private readonly model: Classifier,
    private readonly metadata: ModelMetadata,
  ) {}

  /** The session, or the reason (one line) when the model cannot give its coupling coefficients. */
  static async open(model: Classifier, metadata: ModelMetadata): Promise<RoutingSession | string> {
    const blank = new Float32Array(metadata.inputHeight * metadata.inputWidth * metadata.inputChannels);
    try {
      await model.classify(blank, { coupling: true });
    } catch (e) {
      return (e as Error).message;
    }
    return new RoutingSession(model, metadata);
  }

  /** The coupling coefficients of one prepared image (H*W*C pixels in [0, 1]). */
  async run(image: Float32Array): Promise<CouplingMap[]> {
    const [result] = await this.model.classify(image, { coupling: true });
    const data = result!.coupling!;
    const routed = this.metadata.numClasses + (this.metadata.config.noneOfTheAbove ? 1 : 0);
    return [{ name: 'coupling', dims: [1, data.length / routed, routed], data }];
  }

  /** Nothing to release: the classifier owns the session. */
  async dispose(): Promise<void> {}
}

/** Diverging colour around the uniform share: red above, blue below; `t` in [-1, 1]. */
function heat(t: number): [number, number, number, number] {
  const a = Math.min(1, Math.abs(t));
  return t >= 0 ? [230, 60, 30, 0.8 * a] : [40, 90, 230, 0.8 * a];
}

const SCALE = 8;

/** Draw the input (dimmed gray) with the positions' means over it, each cell stretched over its share of the image. */
function drawMap(canvas: HTMLCanvasElement, image: Float32Array, metadata: ModelMetadata, grid: PrimaryGrid, means: number[], uniform: number, span: number) {
  const { inputHeight: h, inputWidth: w, inputChannels: c } = metadata;
  canvas.width = w * SCALE;
  canvas.height = h * SCALE;
  const ctx = context2d(canvas);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      let v = 0;
      for (let k = 0; k < c; k++) v += image[(y * w + x) * c + k]! / c;
      const g = Math.round(40 + 150 * v);
      ctx.fillStyle = `rgb(${g}, ${g}, ${g})`;
      ctx.fillRect(x * SCALE, y * SCALE, SCALE, SCALE);
    }
  }
  const cellH = canvas.height / grid.rows;
  const cellW = canvas.width / grid.cols;
  means.forEach((m, p) => {
    const [r, g, b, a] = heat((m - uniform) / span);
    ctx.fillStyle = `rgba(${r}, ${g}, ${b}, ${a})`;
    ctx.fillRect((p % grid.cols) * cellW, Math.floor(p / grid.cols) * cellH, cellW, cellH);
  });
}

/**
 * Render the heat map(s) of `maps` for class `cls` over `image` into `box`, with a caption that says what is shown;
 * returns the values shown, or why nothing can be shown.
 */
export function renderRouting(box: HTMLElement, maps: CouplingMap[], image: Float32Array, metadata: ModelMetadata, cls: number): RoutingView | string {
  const first = maps[0]!;
  const [, capsules, routed] = first.dims as [number, number, number];
  const grid = primaryGrid(metadata, capsules);
  if (!grid) return `the ${capsules} primary capsules do not match the model's recorded config, so they cannot be placed on the image`;
  const uniform = 1 / routed;
  const means = maps.map((map) => positionMeans(map, grid, cls));
  // One scale for every map: the largest distance from the uniform share (at least 0.05, so noise stays pale).
  const span = Math.max(0.05, ...means.flat().map((m) => Math.abs(m - uniform)));
  const figures = maps.map((map, r) => {
    const canvas = el('canvas', { className: 'heat', 'data-output': map.name, 'aria-label': `coupling coefficients of ${map.name} as a heat map` });
    drawMap(canvas, image, metadata, grid, means[r]!, uniform, span);
    const title = maps.length > 1 ? `iteration ${r + 1} (${map.name})` : `last iteration (${map.name})`;
    return el('figure', {}, canvas, el('figcaption', { className: 'muted small' }, title));
  });
  const name = metadata.classLabels[cls] ?? String(cls);
  const extra = routed > metadata.numClasses ? ` (plus "none-of-the-above": ${routed} routed capsules)` : '';
  box.replaceChildren(
    el('div', { className: 'heat-maps' }, ...figures),
    el(
      'p',
      { className: 'muted small', id: 'routing-caption' },
      `Coupling c_ij [${first.dims.join(', ')}] from the ${capsules} primary capsules (${grid.rows}×${grid.cols} positions × ${grid.types} types) ` +
        `to class ${name}${extra}: each cell is the mean over the ${grid.types} types at that position, stretched over its share of the image. ` +
        `Red: more than the uniform share 1/${routed} = ${uniform.toFixed(3)}, blue: less (full colour at ±${span.toFixed(3)}).`,
    ),
    el(
      'p',
      { className: 'muted small', id: 'routing-iterations' },
      maps.length > 1
        ? `One map per routing iteration (${maps.length} coupling outputs).`
        : `The model exports the last routing iteration's coupling only (iteration ${metadata.routingIterations} of ${metadata.routingIterations}): ` +
            'per-iteration maps need an export with one coupling output per iteration.',
    ),
  );
  return { cls, grid, outputs: maps.map((m) => m.name), dims: first.dims, means };
}
