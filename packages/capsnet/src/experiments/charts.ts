/** Line plots, grouped bar charts and image grids, drawn on a `Canvas` with labelled axes. */
import { COLORS, Canvas, GLYPH_H, PALETTE, type Rgb, textWidth } from './draw.ts';

export interface Series {
  name: string;
  points: Array<[number, number]>;
  color?: Rgb;
}

export interface LinePlotOptions {
  title: string;
  xLabel: string;
  yLabel: string;
  series: Series[];
  width?: number;
  height?: number;
  /** Logarithmic y axis (non-positive values are dropped). */
  logY?: boolean;
  yMin?: number;
  yMax?: number;
  /** Draw a dot at every point (default: when a series has at most 30 points). */
  markers?: boolean;
}

/** About `count` round tick values covering [min, max]. */
export function niceTicks(min: number, max: number, count = 5): number[] {
  if (!Number.isFinite(min) || !Number.isFinite(max)) return [];
  if (max <= min) return [min];
  const raw = (max - min) / Math.max(1, count);
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * magnitude).find((s) => s >= raw) ?? 10 * magnitude;
  const ticks: number[] = [];
  for (let v = Math.ceil(min / step - 1e-9) * step; v <= max + step * 1e-9; v += step) ticks.push(Math.abs(v) < step * 1e-9 ? 0 : v);
  return ticks;
}

export function formatTick(v: number): string {
  if (v === 0) return '0';
  const abs = Math.abs(v);
  if (abs >= 1e5 || abs < 1e-3) return v.toExponential(0).replace('e', 'E').replace('+', '');
  return String(Number(v.toPrecision(4)));
}

interface Frame {
  left: number;
  top: number;
  width: number;
  height: number;
}

/** Title on top, then (when there are several series) a one-line legend, then the plot frame with axis labels. */
function drawFrame(canvas: Canvas, title: string, xLabel: string, yLabel: string, legend: Array<{ name: string; color: Rgb }>): Frame {
  const titleScale = textWidth(title, 2) <= canvas.width - 12 ? 2 : 1;
  canvas.textCentered(canvas.width / 2, 10, title, COLORS.black, titleScale);
  const legendH = legend.length > 1 ? 16 : 0;
  const top = 34 + legendH;
  const frame = { left: 78, top, width: canvas.width - 78 - 24, height: canvas.height - top - 52 };
  if (legendH) {
    const widths = legend.map((e) => textWidth(e.name) + 30);
    let x = Math.max(frame.left, frame.left + (frame.width - widths.reduce((a, b) => a + b, 0)) / 2);
    legend.forEach((e, i) => {
      canvas.fillRect(x, 32 + 5, 16, 4, e.color);
      canvas.text(x + 20, 32 + 3, e.name);
      x += widths[i]!;
    });
  }
  canvas.textCentered(frame.left + frame.width / 2, canvas.height - 14, xLabel, COLORS.black, 1);
  canvas.textVertical(8, frame.top + frame.height / 2, yLabel, COLORS.black, 1);
  return frame;
}

export function linePlot(options: LinePlotOptions): Canvas {
  const canvas = new Canvas(options.width ?? 640, options.height ?? 400);
  const series = options.series.map((s, i) => ({
    ...s,
    color: s.color ?? PALETTE[i % PALETTE.length]!,
    points: s.points.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y) && (!options.logY || y > 0)),
  }));
  const frame = drawFrame(
    canvas,
    options.title,
    options.xLabel,
    options.yLabel,
    series.map((s) => ({ name: s.name, color: s.color })),
  );
  const xs = series.flatMap((s) => s.points.map((p) => p[0]));
  const ys = series.flatMap((s) => s.points.map((p) => p[1]));
  let xMin = xs.length ? Math.min(...xs) : 0;
  let xMax = xs.length ? Math.max(...xs) : 1;
  if (xMax === xMin) {
    xMin -= 1;
    xMax += 1;
  }
  const fy = (v: number) => (options.logY ? Math.log10(v) : v);
  let yMin = options.yMin !== undefined ? fy(options.yMin) : ys.length ? Math.min(...ys.map(fy)) : 0;
  let yMax = options.yMax !== undefined ? fy(options.yMax) : ys.length ? Math.max(...ys.map(fy)) : 1;
  if (options.logY) {
    yMin = Math.floor(yMin);
    yMax = Math.ceil(yMax);
  }
  if (yMax === yMin) {
    yMin -= 1;
    yMax += 1;
  }
  if (!options.logY && options.yMin === undefined && options.yMax === undefined) {
    const pad = (yMax - yMin) * 0.05;
    yMin -= pad;
    yMax += pad;
  }
  const px = (x: number) => frame.left + ((x - xMin) / (xMax - xMin)) * (frame.width - 1);
  const py = (y: number) => frame.top + frame.height - 1 - ((fy(y) - yMin) / (yMax - yMin)) * (frame.height - 1);

  // grid and ticks
  let xTicks = niceTicks(xMin, xMax, 6);
  // integer data (iterations, steps) gets integer ticks
  if (xs.length && xs.every(Number.isInteger) && xTicks.some((t) => !Number.isInteger(t))) {
    xTicks = xMax - xMin <= 12 ? Array.from({ length: xMax - xMin + 1 }, (_, i) => xMin + i) : xTicks.filter(Number.isInteger);
  }
  const yTicks = options.logY ? Array.from({ length: Math.round(yMax - yMin) + 1 }, (_, i) => 10 ** (yMin + i)) : niceTicks(yMin, yMax, 5);
  for (const t of xTicks) {
    const x = Math.round(px(t));
    canvas.line(x, frame.top, x, frame.top + frame.height - 1, COLORS.lightGrey);
    canvas.line(x, frame.top + frame.height, x, frame.top + frame.height + 3, COLORS.black);
    canvas.textCentered(x, frame.top + frame.height + 7, formatTick(t));
  }
  for (const t of yTicks) {
    const y = Math.round(py(t));
    canvas.line(frame.left, y, frame.left + frame.width - 1, y, COLORS.lightGrey);
    canvas.line(frame.left - 4, y, frame.left - 1, y, COLORS.black);
    const label = formatTick(t);
    canvas.text(frame.left - 7 - textWidth(label), y - 3, label);
  }
  canvas.strokeRect(frame.left - 1, frame.top - 1, frame.width + 2, frame.height + 2, COLORS.black);

  const markers = options.markers ?? series.every((s) => s.points.length <= 30);
  for (const s of series) {
    for (let i = 1; i < s.points.length; i++) {
      const [x0, y0] = s.points[i - 1]!;
      const [x1, y1] = s.points[i]!;
      canvas.line(px(x0), py(y0), px(x1), py(y1), s.color, 2);
    }
    if (markers || s.points.length === 1) for (const [x, y] of s.points) canvas.fillRect(px(x) - 2, py(y) - 2, 5, 5, s.color);
  }
  return canvas;
}

export interface BarChartOptions {
  title: string;
  yLabel: string;
  xLabel?: string;
  categories: string[];
  series: Array<{ name: string; values: number[]; color?: Rgb }>;
  width?: number;
  height?: number;
  yMax?: number;
  format?: (v: number) => string;
}

/** Grouped bars: one group per category, one bar per series, the value written above each bar. */
export function barChart(options: BarChartOptions): Canvas {
  const canvas = new Canvas(options.width ?? 640, options.height ?? 400);
  const colors = options.series.map((s, i) => s.color ?? PALETTE[i % PALETTE.length]!);
  const frame = drawFrame(
    canvas,
    options.title,
    options.xLabel ?? '',
    options.yLabel,
    options.series.map((s, i) => ({ name: s.name, color: colors[i]! })),
  );
  const format = options.format ?? ((v: number) => formatTick(Number(v.toPrecision(3))));
  const all = options.series.flatMap((s) => s.values).filter(Number.isFinite);
  const yMax = options.yMax ?? Math.max(1e-9, ...all) * 1.15;
  const yMin = Math.min(0, ...all);
  const py = (v: number) => frame.top + frame.height - 1 - ((v - yMin) / (yMax - yMin)) * (frame.height - 1);
  for (const t of niceTicks(yMin, yMax, 5)) {
    const y = Math.round(py(t));
    canvas.line(frame.left, y, frame.left + frame.width - 1, y, COLORS.lightGrey);
    canvas.line(frame.left - 4, y, frame.left - 1, y, COLORS.black);
    const label = formatTick(t);
    canvas.text(frame.left - 7 - textWidth(label), y - 3, label);
  }
  const groups = options.categories.length;
  const perGroup = options.series.length;
  const groupWidth = frame.width / Math.max(1, groups);
  const barWidth = Math.max(2, Math.floor((groupWidth * 0.8) / Math.max(1, perGroup)));
  options.categories.forEach((category, g) => {
    const groupLeft = frame.left + g * groupWidth + (groupWidth - barWidth * perGroup) / 2;
    options.series.forEach((s, i) => {
      const v = s.values[g];
      if (v === undefined || !Number.isFinite(v)) return;
      const color = colors[i]!;
      const x = Math.round(groupLeft + i * barWidth);
      const y0 = py(Math.max(0, v));
      const y1 = py(Math.min(0, v));
      canvas.fillRect(x, y0, barWidth - 1, Math.max(1, y1 - y0), color);
      const label = format(v);
      if (textWidth(label) <= barWidth + 10) {
        // above the bar, or inside its top when there is no room above
        const above = y0 - GLYPH_H - 3 >= frame.top;
        canvas.textCentered(x + barWidth / 2, above ? y0 - GLYPH_H - 3 : y0 + 3, label, above ? COLORS.black : COLORS.white);
      }
    });
    canvas.textCentered(frame.left + (g + 0.5) * groupWidth, frame.top + frame.height + 7, category);
  });
  canvas.strokeRect(frame.left - 1, frame.top - 1, frame.width + 2, frame.height + 2, COLORS.black);
  return canvas;
}

/** One picture in a grid: layers drawn in order on black, grayscale when untinted, else as coloured ink. */
export interface GridCell {
  width: number;
  height: number;
  layers: Array<{ pixels: ArrayLike<number>; tint?: Rgb }>;
  caption?: string;
  captionColor?: Rgb;
}

export interface ImageGridOptions {
  title?: string;
  /** rows of cells; rows may differ in length */
  rows: GridCell[][];
  scale?: number;
  gap?: number;
  rowLabels?: string[];
  colLabels?: string[];
  /** Extra lines under the grid. */
  footer?: string[];
}

export function imageGrid(options: ImageGridOptions): Canvas {
  const scale = options.scale ?? 2;
  const gap = options.gap ?? 2;
  const cols = Math.max(1, ...options.rows.map((r) => r.length));
  const cellW = Math.max(1, ...options.rows.flat().map((c) => c.width)) * scale;
  const cellH = Math.max(1, ...options.rows.flat().map((c) => c.height)) * scale;
  const hasCaptions = options.rows.some((r) => r.some((c) => c.caption));
  const rowH = cellH + gap + (hasCaptions ? GLYPH_H + 4 : 0);
  const labelW = options.rowLabels ? Math.max(0, ...options.rowLabels.map((l) => textWidth(l))) + 8 : 0;
  const titleH = options.title ? 26 : 4;
  const colLabelH = options.colLabels ? GLYPH_H + 6 : 0;
  const footerH = (options.footer?.length ?? 0) * (GLYPH_H + 4) + (options.footer?.length ? 6 : 0);
  const width = Math.max(
    labelW + cols * (cellW + gap) + gap + 4,
    options.title ? textWidth(options.title, 2) + 12 : 0,
    ...(options.footer ?? []).map((l) => textWidth(l) + 12),
  );
  const height = titleH + colLabelH + options.rows.length * rowH + gap + footerH + 4;
  const canvas = new Canvas(Math.ceil(width), Math.ceil(height));
  if (options.title) canvas.textCentered(canvas.width / 2, 8, options.title, COLORS.black, 2);
  const x0 = labelW + gap + 2;
  const y0 = titleH + colLabelH;
  options.colLabels?.forEach((label, c) => canvas.textCentered(x0 + c * (cellW + gap) + cellW / 2, titleH, label));
  options.rows.forEach((row, r) => {
    const y = y0 + r * rowH;
    if (options.rowLabels?.[r]) canvas.text(4, y + cellH / 2 - 3, options.rowLabels[r]!);
    row.forEach((cell, c) => {
      const x = x0 + c * (cellW + gap);
      canvas.fillRect(x, y, cell.width * scale, cell.height * scale, COLORS.black);
      for (const layer of cell.layers) canvas.image(x, y, layer.pixels, cell.width, cell.height, scale, layer.tint);
      if (cell.caption) canvas.textCentered(x + cellW / 2, y + cellH + 3, cell.caption, cell.captionColor ?? COLORS.black);
    });
  });
  options.footer?.forEach((line, i) => canvas.text(6, y0 + options.rows.length * rowH + gap + 4 + i * (GLYPH_H + 4), line));
  return canvas;
}
