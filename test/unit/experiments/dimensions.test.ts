/**
 * The dimension statistics of experiments/dimensions.ts on synthetic digits whose change is known by
 * construction: a "9" (a loop and a tail) drawn from its geometry with anti-aliased strokes, then shifted,
 * thickened, scaled, stretched, sheared or given an extra local stroke between the -0.25 and +0.25 images.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { checkDimensionFindings, dimensionLabel } from '@capsnet-onnx/core';
import { dimensionFindings, imageStatistics, measureChange, summarize } from '../../../packages/capsnet/src/experiments/dimensions.ts';

const SIDE = 28;
type Point = [number, number];
type Segment = [Point, Point];

/** The nine's strokes: a loop of radius 5 around (13, 10) and a tail from (18, 10) down to (18, 22). */
function nine(): Segment[] {
  const loop: Segment[] = Array.from({ length: 48 }, (_, i) => {
    const at = (k: number): Point => [13 + 5 * Math.cos((2 * Math.PI * k) / 48), 10 + 5 * Math.sin((2 * Math.PI * k) / 48)];
    return [at(i), at(i + 1)];
  });
  return [
    ...loop,
    [
      [18, 10],
      [18, 22],
    ],
  ];
}

function distance(p: Point, [a, b]: Segment): number {
  const [dx, dy] = [b[0] - a[0], b[1] - a[1]];
  const t = Math.max(0, Math.min(1, ((p[0] - a[0]) * dx + (p[1] - a[1]) * dy) / (dx * dx + dy * dy || 1)));
  return Math.hypot(p[0] - a[0] - t * dx, p[1] - a[1] - t * dy);
}

/** Anti-aliased strokes of half-width `radius` (pixels) after moving every point by `warp`. */
function render(segments: Segment[], radius = 1.2, warp: (p: Point) => Point = (p) => p): Float32Array {
  const moved = segments.map(([a, b]) => [warp(a), warp(b)] as Segment);
  const image = new Float32Array(SIDE * SIDE);
  for (let y = 0; y < SIDE; y++) {
    for (let x = 0; x < SIDE; x++) {
      const d = Math.min(...moved.map((s) => distance([x, y], s)));
      image[y * SIDE + x] = Math.max(0, Math.min(1, radius + 0.5 - d));
    }
  }
  return image;
}

const base = render(nine());
const centre = imageStatistics(base, SIDE, SIDE);
const labelOf = (a: Float32Array, b: Float32Array) => summarize(1, [measureChange(a, b, base, SIDE, SIDE)], SIDE * SIDE);
const about = (p: Point, f: (dx: number, dy: number) => Point): Point => {
  const [x, y] = f(p[0] - centre.cx, p[1] - centre.cy);
  return [centre.cx + x, centre.cy + y];
};

describe('dimension statistics on synthetic digits', () => {
  test('the statistics of a drawn stroke: ink, centroid, stroke width in pixels', () => {
    // One horizontal bar 12 px long, half-width 1.5 -> about 4 px wide (anti-aliased edge of 1 px).
    const bar = render(
      [
        [
          [8, 14],
          [20, 14],
        ],
      ],
      1.5,
    );
    const s = imageStatistics(bar, SIDE, SIDE);
    assert.ok(Math.abs(s.cx - 14) < 1e-6 && Math.abs(s.cy - 14) < 1e-6, `centroid ${s.cx}, ${s.cy}`);
    assert.ok(s.sigmaX > 3 * s.sigmaY, `a horizontal bar is wider than high: ${s.sigmaX} vs ${s.sigmaY}`);
    assert.ok(s.strokeWidth > 2.5 && s.strokeWidth < 4, `stroke width ${s.strokeWidth} px`);
    assert.ok(Math.abs(s.slant) < 1e-9);
  });

  test('a shifted digit reads as translation, with the shift in pixels', () => {
    const effect = labelOf(
      render(nine(), 1.2, ([x, y]) => [x - 1, y + 0.5]),
      render(nine(), 1.2, ([x, y]) => [x + 1, y - 0.5]),
    );
    assert.equal(effect.label, 'translation');
    assert.ok(Math.abs(effect.shiftX - 2) < 0.05 && Math.abs(effect.shiftY + 1) < 0.05, `shift ${effect.shiftX}, ${effect.shiftY}`);
  });

  test('a thickened stroke reads as stroke thickness, the ink growing', () => {
    const effect = labelOf(render(nine(), 0.8), render(nine(), 1.6));
    assert.equal(effect.label, 'stroke thickness');
    assert.ok(effect.thickness > 1 && effect.thickness < 2, `thickness change ${effect.thickness} px`);
    assert.ok(effect.ink > 0.4, `ink change ${effect.ink}`);
  });

  test('a uniformly scaled digit reads as scale; one stretched along x as width', () => {
    const scaled = (k: number) => render(nine(), 1.2, (p) => about(p, (dx, dy) => [k * dx, k * dy]));
    const scale = labelOf(scaled(0.85), scaled(1.15));
    assert.equal(scale.label, 'scale');
    assert.ok(scale.width > 0.5 && scale.height > 0.5, `sigma changes ${scale.width}, ${scale.height}`);
    const stretched = (k: number) => render(nine(), 1.2, (p) => about(p, (dx, dy) => [k * dx, dy]));
    const width = labelOf(stretched(0.8), stretched(1.2));
    assert.equal(width.label, 'width');
    assert.ok(width.width > 0.5 && Math.abs(width.height) < 0.1, `sigma changes ${width.width}, ${width.height}`);
  });

  test('a sheared digit reads as skew, signed', () => {
    const sheared = (s: number) => render(nine(), 1.2, (p) => about(p, (dx, dy) => [dx + s * dy, dy]));
    const effect = labelOf(sheared(-0.25), sheared(0.25));
    assert.equal(effect.label, 'skew');
    // slant change 0.5 times the digit's height sigma
    assert.ok(Math.abs(effect.skew - 0.5 * centre.sigmaY) < 0.3, `skew ${effect.skew} px, expected about ${0.5 * centre.sigmaY}`);
  });

  test('a stroke added in one corner reads as a localized part; no change as no visible change', () => {
    const serif = render([
      ...nine(),
      [
        [18, 22],
        [21, 22],
      ],
    ]);
    const effect = labelOf(base, serif);
    assert.equal(effect.label, 'localized part');
    assert.ok(effect.locality >= 0.9 && effect.inkShare < 0.3, `locality ${effect.inkShare} ${effect.locality}`);
    assert.equal(labelOf(base, base).label, 'no visible change');
    assert.equal(
      labelOf(
        render(nine(), 1.2, ([x, y]) => [x + 1, y]),
        render(nine(), 1.2, ([x, y]) => [x + 1, y]),
      ).locality,
      0,
    );
  });

  test('a model file: per class and overall, checked, labels with their fallbacks', () => {
    const steps = [-0.25, 0, 0.25];
    // 2 dimensions: dimension 1 shifts class 0 and thickens class 1, dimension 2 changes nothing.
    const grid = (lo: Float32Array, hi: Float32Array) => Float32Array.from([...lo, ...base, ...hi, ...base, ...base, ...base]);
    const shifted = grid(
      render(nine(), 1.2, ([x, y]) => [x - 1, y]),
      render(nine(), 1.2, ([x, y]) => [x + 1, y]),
    );
    const thick = grid(render(nine(), 0.8), render(nine(), 1.6));
    const shape = { inputHeight: SIDE, inputWidth: SIDE, inputChannels: 1, digitDim: 2, numClasses: 3 };
    const findings = dimensionFindings(
      [
        { cls: 0, reconstructions: shifted },
        { cls: 1, reconstructions: thick },
      ],
      shape,
      steps,
      'model.onnx',
      'synthetic',
    );
    const parsed = checkDimensionFindings(JSON.parse(JSON.stringify(findings)), 'dimensions.json', { digitDim: 2, numClasses: 3 });
    assert.deepEqual(
      parsed.perClass.map((c) => [c.class, c.digits, c.dimensions.map((d) => d.label)]),
      [
        [0, 1, ['translation', 'no visible change']],
        [1, 1, ['stroke thickness', 'no visible change']],
      ],
    );
    assert.equal(parsed.overall[1]!.label, 'no visible change');
    assert.equal(dimensionLabel(parsed, 1, 0), 'stroke thickness');
    assert.equal(dimensionLabel(parsed, 2, 1), 'no visible change', 'a class not measured falls back to the overall label');
    assert.equal(dimensionLabel(null, 2, 1), 'dimension 2');
    assert.throws(
      () => checkDimensionFindings(findings, 'dims.json', { digitDim: 16, numClasses: 10 }),
      /^Error: dims\.json: measured on capsules of 3 x 2, the model has 10 x 16: write it with `capsnet experiment perturb/,
    );
    assert.throws(() => checkDimensionFindings({ format: 'x' }, 'dims.json'), /dims\.json: not a dimensions file/);
  });
});
