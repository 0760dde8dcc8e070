/**
 * The figures of the experiments and of `capsnet plot`: each is a declarative Vega-Lite spec (line plots, grouped
 * bar charts, image grids), compiled by vega-lite and rendered to SVG by vega's headless view (no canvas package:
 * text widths are estimated, and the SVG names its fonts for the viewer to draw). Image grids embed each picture
 * as a PNG (fast-png) drawn from its pixels; every title, label and caption of the figure is SVG text.
 */
import { encode as encodePng } from 'fast-png';
import * as vega from 'vega';
import { type TopLevelSpec, compile } from 'vega-lite';
import { writeFileAtomic } from '../files/atomic.ts';

/** A colour as 0-255 red, green, blue. */
export type Rgb = readonly [number, number, number];

export const COLORS = {
  black: [0, 0, 0],
  red: [214, 39, 40],
  green: [44, 160, 44],
} as const satisfies Record<string, Rgb>;

/** A Vega-Lite spec (https://vega.github.io/vega-lite/docs/spec.html), rendered by `renderSvg`. */
export type FigureSpec = TopLevelSpec;

export const SCHEMA = 'https://vega.github.io/schema/vega-lite/v6.json';

/** Readable at print size: 11-12 px labels and titles in a common sans-serif face, a white background. */
export const CONFIG = {
  font: 'Helvetica, Arial, sans-serif',
  background: 'white',
  title: { fontSize: 15, subtitleFontSize: 12, anchor: 'middle' },
  axis: { labelFontSize: 11, titleFontSize: 12, titleFontWeight: 'normal', grid: true, gridColor: '#e5e5e5' },
  legend: { labelFontSize: 11, titleFontSize: 12, labelLimit: 300 },
  header: { labelFontSize: 12, titleFontSize: 12 },
} as const;

// Without a canvas package vega guesses 0.8 em per character, about 1.5 times Helvetica's average, so titles and
// labels got far more room than they use. This estimate takes Helvetica's advance widths by kind of character (em).
const EM: Array<[RegExp, number]> = [
  [/[ijlI.,:;'|!]/, 0.24],
  [/[ftr()[\]\-/ ]/, 0.32],
  [/[mwMW%@]/, 0.86],
  [/[A-Z]/, 0.68],
  [/[0-9a-z]/, 0.55],
];
function helveticaWidth(text: string, fontSize: number, bold: boolean): number {
  let em = 0;
  for (const ch of text.trim()) em += EM.find(([re]) => re.test(ch))?.[1] ?? 0.6;
  return em * fontSize * (bold ? 1.06 : 1);
}
// textMetrics is exported by vega (from vega-scenegraph) but not declared in its types
const metrics = (vega as unknown as { textMetrics: unknown }).textMetrics as {
  width: (item: { fontSize?: number; fontWeight?: string | number }, text?: unknown) => number;
};
metrics.width = (item, text) => helveticaWidth(String(text ?? ''), item.fontSize ?? 11, item.fontWeight === 'bold' || Number(item.fontWeight) >= 600);

const css = (c: Rgb) => `rgb(${c[0]},${c[1]},${c[2]})`;

export interface Series {
  name: string;
  points: Array<[number, number]>;
}

export interface LinePlotOptions {
  title: string;
  /** Axis titles, with units where there are any, e.g. 'epoch', 'test accuracy (%)'. */
  xLabel: string;
  yLabel: string;
  series: Series[];
  /** Plot area in px (default 480 x 300). */
  width?: number;
  height?: number;
  /** Logarithmic y axis (non-positive values are dropped: a log axis cannot show them). */
  logY?: boolean;
  yMin?: number;
  yMax?: number;
  /** A dot at every point (default: when every series has at most 30 points). */
  markers?: boolean;
}

/** One line per series, in the order given, with a legend when there are several. */
export function linePlot(options: LinePlotOptions): FigureSpec {
  const rows = options.series.flatMap((s) =>
    s.points.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y) && (!options.logY || y > 0)).map(([x, y]) => ({ series: s.name, x, y })),
  );
  const integerX = rows.length > 0 && rows.every((r) => Number.isInteger(r.x));
  const markers = options.markers ?? options.series.every((s) => s.points.length <= 30);
  const domain = options.yMin !== undefined && options.yMax !== undefined ? { domain: [options.yMin, options.yMax] } : {};
  return {
    $schema: SCHEMA,
    config: CONFIG,
    title: options.title,
    width: options.width ?? 480,
    height: options.height ?? 300,
    data: { values: rows },
    mark: { type: 'line', strokeWidth: 2, point: markers ? { size: 30 } : false },
    encoding: {
      x: {
        field: 'x',
        type: 'quantitative',
        title: options.xLabel,
        scale: { zero: false, nice: !integerX },
        axis: integerX ? { tickMinStep: 1, format: 'd' } : {},
      },
      y: {
        field: 'y',
        type: 'quantitative',
        title: options.yLabel,
        scale: options.logY ? { type: 'log', ...domain } : { zero: false, ...domain },
        axis: options.logY ? { format: '.0e' } : {},
      },
      color: {
        field: 'series',
        type: 'nominal',
        sort: options.series.map((s) => s.name),
        scale: { scheme: 'tableau10' },
        legend: options.series.length > 1 ? { title: null, orient: 'right' } : null,
      },
    },
  };
}

export interface BarChartOptions {
  title: string;
  yLabel: string;
  xLabel?: string;
  categories: string[];
  series: Array<{ name: string; values: number[] }>;
  yMax?: number;
  /** The value written above each bar (default: 3 significant digits). */
  format?: (v: number) => string;
}

/** `text` in lines of at most about `width` characters, broken at spaces. */
function wrap(text: string, width: number): string[] {
  const lines: string[] = [];
  for (const word of text.split(' ')) {
    const last = lines.at(-1);
    if (last !== undefined && last.length + 1 + word.length <= width) lines[lines.length - 1] = `${last} ${word}`;
    else lines.push(word);
  }
  return lines;
}

/** Grouped bars: one group per category, one bar per series, the value written above each bar. */
export function barChart(options: BarChartOptions): FigureSpec {
  const format = options.format ?? ((v: number) => String(Number(v.toPrecision(3))));
  const rows = options.series.flatMap((s) =>
    options.categories.flatMap((category, i) => {
      const value = s.values[i];
      return value === undefined || !Number.isFinite(value) ? [] : [{ category, series: s.name, value, label: format(value) }];
    }),
  );
  // long category names break into lines of about 16 characters (the labels stay horizontal)
  const lines = Object.fromEntries(options.categories.map((c) => [c, wrap(c, 16)]));
  const x = {
    field: 'category',
    type: 'nominal',
    sort: options.categories,
    title: options.xLabel ?? null,
    axis: { labelAngle: 0, labelLimit: 0, grid: false, labelExpr: `${JSON.stringify(lines)}[datum.label] || datum.label` },
  } as const;
  const values = rows.map((r) => r.value);
  const yScale = { domain: [Math.min(0, ...values), options.yMax ?? Math.max(1e-9, ...values) * 1.12] };
  const xOffset = { field: 'series', type: 'nominal', sort: options.series.map((s) => s.name) } as const;
  return {
    $schema: SCHEMA,
    config: CONFIG,
    title: options.title,
    width: Math.max(320, options.categories.length * (36 * options.series.length + 40)),
    height: 300,
    data: { values: rows },
    encoding: { x, xOffset, y: { field: 'value', type: 'quantitative', title: options.yLabel, scale: yScale } },
    layer: [
      {
        mark: { type: 'bar' },
        encoding: {
          color: {
            field: 'series',
            type: 'nominal',
            sort: options.series.map((s) => s.name),
            scale: { scheme: 'tableau10' },
            legend: options.series.length > 1 ? { title: null, orient: 'top' } : null,
          },
        },
      },
      { mark: { type: 'text', baseline: 'bottom', dy: -3, fontSize: 10 }, encoding: { text: { field: 'label' } } },
    ],
  };
}

/** One picture in a grid: layers drawn in order on black, grayscale when untinted, else as coloured ink. */
export interface GridCell {
  width: number;
  height: number;
  /** Row-major height x width values in [0, 1]. */
  layers: Array<{ pixels: ArrayLike<number>; tint?: Rgb }>;
  caption?: string;
  captionColor?: Rgb;
}

export interface ImageGridOptions {
  title?: string;
  /** rows of cells; rows may differ in length */
  rows: GridCell[][];
  /** Screen pixels per image pixel (default 2). */
  scale?: number;
  /** Space between cells, px (default 2). */
  gap?: number;
  rowLabels?: string[];
  colLabels?: string[];
  /** Axis titles for the row and column labels (e.g. 'capsule dimension', 'perturbation'). */
  rowTitle?: string;
  colTitle?: string;
  /** Lines under the title. */
  footer?: string[];
}

/** A cell's layers composited on black, as a PNG data URL `scale` times the image's size (nearest neighbour: crisp pixels in any viewer). */
export function cellPng(cell: GridCell, scale: number): string {
  const { width, height } = cell;
  const rgb = new Float32Array(width * height * 3);
  for (const layer of cell.layers) {
    for (let p = 0; p < width * height; p++) {
      const v = Math.min(1, Math.max(0, layer.pixels[p] ?? 0));
      for (let c = 0; c < 3; c++) {
        rgb[3 * p + c] = layer.tint ? rgb[3 * p + c]! * (1 - v) + (layer.tint[c]! / 255) * v : v;
      }
    }
  }
  const gray = cell.layers.every((l) => !l.tint);
  const channels = gray ? 1 : 3;
  const out = new Uint8Array(width * scale * height * scale * channels);
  for (let y = 0; y < height * scale; y++) {
    for (let x = 0; x < width * scale; x++) {
      const p = Math.floor(y / scale) * width + Math.floor(x / scale);
      for (let c = 0; c < channels; c++) out[(y * width * scale + x) * channels + c] = Math.round(255 * rgb[3 * p + c]!);
    }
  }
  const png = encodePng({ width: width * scale, height: height * scale, data: out, channels, depth: 8 });
  return `data:image/png;base64,${Buffer.from(png).toString('base64')}`;
}

/** Pictures in rows and columns, labelled by the axes' row and column labels, each with an optional caption under it. */
export function imageGrid(options: ImageGridOptions): FigureSpec {
  const scale = options.scale ?? 2;
  const gap = options.gap ?? 2;
  const cells = options.rows.flat();
  const cellW = Math.max(1, ...cells.map((c) => c.width)) * scale;
  const cellH = Math.max(1, ...cells.map((c) => c.height)) * scale;
  const captions = cells.some((c) => c.caption);
  const captionH = captions ? 15 : 0;
  const rowName = (r: number) => options.rowLabels?.[r] ?? String(r);
  const colName = (c: number) => options.colLabels?.[c] ?? String(c);
  const rows = options.rows.flatMap((row, r) =>
    row.map((cell, c) => ({
      row: rowName(r),
      col: colName(c),
      url: cellPng(cell, scale),
      caption: cell.caption ?? '',
      color: css(cell.captionColor ?? COLORS.black),
    })),
  );
  const columns = Math.max(1, ...options.rows.map((r) => r.length));
  const axis = { domain: false, ticks: false, grid: false, labelPadding: 4 };
  const x = {
    field: 'col',
    type: 'ordinal',
    sort: Array.from({ length: columns }, (_, c) => colName(c)),
    title: options.colTitle ?? null,
    axis: options.colLabels ? { ...axis, orient: 'top' as const, labelAngle: 0 } : null,
  } as const;
  const y = {
    field: 'row',
    type: 'ordinal',
    sort: options.rows.map((_, r) => rowName(r)),
    title: options.rowTitle ?? null,
    axis: options.rowLabels ? axis : null,
  } as const;
  const subtitle = options.footer?.length ? { subtitle: options.footer } : {};
  return {
    $schema: SCHEMA,
    config: { ...CONFIG, view: { stroke: null } },
    ...(options.title ? { title: { text: options.title, ...subtitle } } : options.footer?.length ? { title: { text: '', ...subtitle } } : {}),
    width: { step: cellW + gap },
    height: { step: cellH + gap + captionH },
    data: { values: rows },
    encoding: { x: { ...x, scale: { paddingInner: 0, paddingOuter: 0 } }, y: { ...y, scale: { paddingInner: 0, paddingOuter: 0 } } },
    layer: [
      // aria: false keeps the data URL out of an aria-label (it would double the file)
      { mark: { type: 'image', width: cellW, height: cellH, yOffset: -captionH / 2, aria: false }, encoding: { url: { field: 'url' } } },
      ...(captions
        ? [
            {
              mark: { type: 'text' as const, baseline: 'top' as const, dy: cellH / 2 - captionH / 2 + 2, fontSize: 11, aria: false },
              encoding: { text: { field: 'caption' }, color: { field: 'color', type: 'nominal' as const, scale: null } },
            },
          ]
        : []),
    ],
  };
}

/** An SVG document and its size in px. */
export interface RenderedFigure {
  svg: string;
  width: number;
  height: number;
}

/** Compile a Vega-Lite spec and render it to a standalone SVG document (UTF-8 text with an XML declaration). */
export async function renderSvg(spec: FigureSpec): Promise<RenderedFigure> {
  const view = new vega.View(vega.parse(compile(spec).spec), { renderer: 'none' });
  try {
    const svg = await view.toSVG();
    const size = /^<svg[^>]*\swidth="([\d.]+)"[^>]*\sheight="([\d.]+)"/.exec(svg);
    if (!size) throw new Error('vega rendered no <svg> root with a width and a height');
    return { svg: `<?xml version="1.0" encoding="UTF-8"?>\n${svg}\n`, width: Number(size[1]), height: Number(size[2]) };
  } finally {
    view.finalize();
  }
}

/** Render `spec` and write it to `path` atomically (temp file, then rename); returns the figure's size in px. */
export async function saveFigure(path: string, spec: FigureSpec): Promise<{ width: number; height: number }> {
  const { svg, width, height } = await renderSvg(spec);
  writeFileAtomic(path, svg);
  return { width, height };
}
