/**
 * Figures (issue 24 item 7): the experiments' line plots, bar charts and image grids and `capsnet plot`'s training
 * curves are Vega-Lite specs rendered to SVG. Each SVG is parsed as XML, and its marks are read back: one line path
 * per series with one vertex per point, the axis titles, legends, labels and embedded pictures. `capsnet plot`'s
 * bad inputs each end in one line naming the problem, and an existing file is replaced only with --overwrite.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { execa } from 'execa';
import type { Element } from '@xmldom/xmldom';
import { type PlotOptions, curvesFigure, plotRun, readMetrics } from '../../../packages/capsnet/src/experiments/curves.ts';
import { COLORS, barChart, cellPng, imageGrid, linePlot, renderSvg, saveFigure } from '../../../packages/capsnet/src/experiments/figures.ts';
import { CLI, ROOT } from '../../support/fixtures.ts';
import { byClass, parseSvg, svgInfo, texts } from '../../support/svg.ts';

let scratch: string;
before(() => {
  scratch = mkdtempSync(join(tmpdir(), 'capsnet-plot-'));
});
after(() => rmSync(scratch, { recursive: true, force: true }));

/** The vertices of an SVG path's `d` (vega's lines are M x,y L x,y ...). */
function vertices(path: Element): Array<[number, number]> {
  const d = path.getAttribute('d') ?? '';
  return [...d.matchAll(/[ML]\s*(-?[\d.e+-]+)[ ,](-?[\d.e+-]+)/g)].map((m) => [Number(m[1]), Number(m[2])]);
}

/** The line paths of every vega line mark in the document. */
function linePaths(svg: string): Element[] {
  return byClass(parseSvg(svg), 'g', 'mark-line').flatMap((g) => Array.from(g.getElementsByTagName('path')));
}

function axisTitles(svg: string): string[] {
  return byClass(parseSvg(svg), 'g', 'role-axis-title').flatMap((g) => texts(g));
}

/** CapsNet epoch records as train/trainer.ts writes them (values made up, shapes real). */
function epochs(n: number): string {
  return Array.from({ length: n }, (_, i) => {
    const e = i + 1;
    return JSON.stringify({
      epoch: e,
      step: 250 * e,
      test_accuracy: 0.9 + 0.01 * e,
      margin_loss: 0.05 / e,
      reconstruction_loss: 0.02 / e,
      train_loss: 0.08 / e,
      train_margin_loss: 0.06 / e,
      train_reconstruction_loss: 0.021 / e,
      images_per_second: 300,
      learning_rate: 0.001,
      backend: 'cpu',
      seconds: 30,
    });
  })
    .map((line) => `${line}\n`)
    .join('');
}

function runDir(name: string, metrics?: string): string {
  const dir = join(scratch, name);
  mkdirSync(dir, { recursive: true });
  if (metrics !== undefined) writeFileSync(join(dir, 'metrics.jsonl'), metrics);
  return dir;
}

describe('experiment figures', () => {
  test('a line plot: one path per series with one vertex per point, axis titles, a legend, log scale drops non-positive values', async () => {
    const spec = linePlot({
      title: 'Coupling change',
      xLabel: 'routing iteration r',
      yLabel: 'mean |c(r+1) - c(r)| (log scale)',
      logY: true,
      series: [
        { name: 'R=1', points: [[1, 0.3]] },
        {
          name: 'R=3',
          points: [
            [1, 0.3],
            [2, 0.05],
            [3, 0.004],
          ],
        },
        {
          name: 'R=5',
          points: [
            [1, 0.3],
            [2, 0.05],
            [3, 0],
            [4, 0.001],
            [5, 2e-4],
          ],
        },
      ],
    });
    const { svg, width, height } = await renderSvg(spec);
    assert.ok(width > 400 && height > 250, `${width}x${height}`);
    const paths = linePaths(svg);
    // R=1's single point draws as a dot only; the zero of R=5 is dropped from the log axis
    assert.deepEqual(
      paths.map((p) => vertices(p).length),
      [1, 3, 4],
    );
    assert.deepEqual(axisTitles(svg).sort(), ['mean |c(r+1) - c(r)| (log scale)', 'routing iteration r']);
    const all = texts(parseSvg(svg));
    for (const label of ['Coupling change', 'R=1', 'R=3', 'R=5']) assert.ok(all.includes(label), `no "${label}" in ${JSON.stringify(all)}`);
    // higher values are higher up: y of the first vertex (0.3) is above (smaller than) the last (2e-4)
    const r5 = vertices(paths[2]!);
    assert.ok(r5[0]![1] < r5.at(-1)![1]);
  });

  test('a grouped bar chart: one bar per category and series, values written above, categories and legend as text', async () => {
    const { svg } = await renderSvg(
      barChart({
        title: 'Accuracy',
        yLabel: 'test accuracy (%)',
        categories: ['translated', 'centred', 'GENERATED affine (not affNIST)'],
        series: [
          { name: 'CapsNet', values: [97.1, 99, 79.2] },
          { name: 'baseline CNN', values: [98.4, 99.2, 66.1] },
        ],
        format: (v) => v.toFixed(1),
        yMax: 100,
      }),
    );
    const doc = parseSvg(svg);
    const bars = byClass(doc, 'g', 'mark-rect').flatMap((g) => Array.from(g.getElementsByTagName('path')));
    assert.equal(bars.length, 6);
    const all = texts(doc);
    for (const label of ['97.1', '66.1', 'CapsNet', 'baseline CNN', 'translated', 'test accuracy (%)']) assert.ok(all.includes(label), `no "${label}"`);
    // the long category breaks into lines instead of being cut
    assert.ok(all.some((t) => t.includes('(not affNIST)')));
  });

  test('an image grid: one embedded PNG per cell, of the cell size times the scale; labels, titles and captions are SVG text', async () => {
    const stroke = Float32Array.from({ length: 28 * 28 }, (_, i) => (i % 28 === 14 ? 1 : 0));
    const cell = { width: 28, height: 28, layers: [{ pixels: stroke }], caption: 'L:1' };
    const tinted = { ...cell, layers: [{ pixels: stroke }, { pixels: stroke, tint: COLORS.red }], caption: 'P:1', captionColor: COLORS.red };
    const path = join(scratch, 'grid.svg');
    const size = await saveFigure(
      path,
      imageGrid({
        title: 'Digit 1',
        rows: [
          [cell, cell, cell],
          [tinted, tinted],
        ],
        rowLabels: ['input', 'recon'],
        colLabels: ['-.05', '0', '+.05'],
        colTitle: 'perturbation',
        scale: 3,
        footer: ['test image #0'],
      }),
    );
    const info = svgInfo(path);
    assert.deepEqual([info.width, info.height], [size.width, size.height]);
    const images = Array.from(info.doc.getElementsByTagName('image'));
    assert.equal(images.length, 5);
    for (const image of images) {
      assert.equal(image.getAttribute('width'), '84');
      assert.match(image.getAttribute('xlink:href') ?? '', /^data:image\/png;base64,/);
    }
    for (const label of ['Digit 1', 'test image #0', 'input', 'recon', '-.05', '+.05', 'perturbation', 'L:1', 'P:1']) {
      assert.ok(info.texts.includes(label), `no "${label}" in ${JSON.stringify(info.texts)}`);
    }
    // the data URLs are not repeated in aria labels
    assert.equal(readFileSync(path, 'utf8').split('data:image/png').length - 1, 5);
    // a tinted layer is coloured ink: the PNG is RGB; an untinted cell is grayscale
    const png = (url: string) => Buffer.from(url.split(',')[1]!, 'base64');
    assert.equal(png(cellPng(tinted, 1))[25], 2, 'colour type RGB');
    assert.equal(png(cellPng(cell, 1))[25], 0, 'colour type grayscale');
    assert.equal(png(cellPng(cell, 3)).readUInt32BE(16), 84, 'width scaled by 3');
  });
});

describe('capsnet plot', () => {
  test("a run's curves: loss parts and test accuracy, one path per series, one vertex per epoch, axis titles", async () => {
    const dir = runDir('run', epochs(7));
    const result = await plotRun(dir);
    assert.equal(result.path, join(dir, 'curves.svg'));
    assert.equal(result.epochs, 7);
    assert.equal(result.lossSeries, 5);
    const svg = readFileSync(result.path, 'utf8');
    const paths = linePaths(svg);
    // train total, margin, reconstruction; test margin, reconstruction; test accuracy
    assert.equal(paths.length, 6);
    for (const p of paths) assert.equal(vertices(p).length, 7);
    assert.equal(paths.filter((p) => p.getAttribute('stroke-dasharray')?.match(/^\d+,[1-9]/)).length, 2, 'the two test losses are dashed');
    const titles = axisTitles(svg);
    assert.equal(titles.filter((t) => t === 'epoch').length, 2);
    assert.ok(titles.includes('loss (log scale)') && titles.includes('test accuracy (%)'), JSON.stringify(titles));
    const all = texts(parseSvg(svg));
    for (const label of ['margin', 'reconstruction', 'total', 'Test accuracy per epoch']) assert.ok(all.includes(label), `no "${label}"`);
    assert.ok(all.some((t) => t.includes('final test accuracy 97.00%')));
  });

  test('a baseline CNN run plots its cross entropy; a zero loss turns the log scale off', async () => {
    const records = [1, 2].map((epoch) => ({ epoch, test_accuracy: 0.5, cross_entropy_loss: 2 - epoch, train_loss: 1, train_cross_entropy_loss: 1 }));
    const { svg } = await renderSvg(curvesFigure(records, 'cnn'));
    assert.deepEqual(
      linePaths(svg).map((p) => vertices(p).length),
      [2, 2, 2, 2],
    );
    assert.ok(axisTitles(svg).includes('loss'));
    assert.ok(texts(parseSvg(svg)).includes('cross entropy'));
  });

  test('bad input: one line naming the problem and the fix (line numbers for damaged lines)', () => {
    const file = join(scratch, 'a-file');
    writeFileSync(file, 'x');
    const cases: Array<[string, RegExp]> = [
      [join(scratch, 'missing'), /missing does not exist: pass the run directory that `capsnet train --out DIR` wrote$/],
      [file, /a-file is not a directory/],
      [runDir('no-metrics'), /no-metrics has no metrics\.jsonl: it is not a capsnet train run directory, or its first epoch has not finished yet$/],
      [runDir('empty', ''), /metrics\.jsonl is empty: the run has not finished an epoch yet/],
      [runDir('blank', '\n\n'), /metrics\.jsonl is empty/],
      [runDir('truncated', `${epochs(2)}{"epoch": 3, "test_acc`), /metrics\.jsonl line 3 is not valid JSON \(.+\): the file is damaged; remove that line/],
      [runDir('not-a-record', `${epochs(1)}[1, 2]\n`), /metrics\.jsonl line 2 is not an epoch record \(numeric "epoch" and "test_accuracy"\)/],
      [runDir('string-epoch', '{"epoch": "1", "test_accuracy": 0.5}\n'), /line 1 is not an epoch record/],
    ];
    for (const [dir, message] of cases) {
      assert.throws(
        () => readMetrics(dir),
        (e: Error) => {
          assert.match(e.message, message);
          assert.doesNotMatch(e.message, /\n/);
          return true;
        },
      );
    }
  });

  test('outputs: default RUN_DIR/curves.svg or -o, never replacing a file unasked, SVG only, no temp file left', async () => {
    const dir = runDir('outputs', epochs(2));
    const user = join(scratch, 'mine.svg');
    writeFileSync(user, 'my figure');
    const refusals: Array<[PlotOptions, RegExp]> = [
      [{ out: user }, /mine\.svg already exists: pass --overwrite to replace it, or choose another -o FILE\.svg$/],
      [{ out: join(scratch, 'curves.png') }, /curves\.png: the figure is SVG; name the output FILE\.svg$/],
      [{ out: join(scratch, 'no-such-dir', 'x.svg') }, /no-such-dir\/x\.svg does not exist: check the path \(ENOENT\)$/],
    ];
    for (const [options, message] of refusals) {
      await assert.rejects(plotRun(dir, options), (e: Error & { commandLineMessage?: string }) => {
        assert.match(e.commandLineMessage ?? e.message, message);
        return true;
      });
    }
    assert.equal(readFileSync(user, 'utf8'), 'my figure', "the user's file is untouched");
    assert.equal((await plotRun(dir, { out: user, overwrite: true })).path, user);
    assert.equal(linePaths(readFileSync(user, 'utf8')).length, 6);
    assert.deepEqual(
      [...readdirSync(scratch), ...readdirSync(dir)].filter((n) => n.includes('.tmp-')),
      [],
    );
  });

  test('the command: writes RUN_DIR/curves.svg, then refuses to replace it; errors are one line without a stack', { timeout: 120_000 }, async () => {
    const dir = runDir('cli', epochs(3));
    const first = await execa('node', [CLI, 'plot', dir], { cwd: ROOT, reject: false });
    assert.equal(first.exitCode, 0, first.stderr);
    assert.match(first.stdout, /curves\.svg: 3 epoch\(s\), 5 loss curve\(s\) and test accuracy, \d+x\d+ px SVG/);
    const written = readFileSync(join(dir, 'curves.svg'), 'utf8');
    assert.equal(linePaths(written).length, 6);
    for (const [args, message] of [
      [[dir], /curves\.svg already exists: pass --overwrite to replace it, or choose another -o FILE\.svg$/],
      [[runDir('cli-bad', '{\n')], /line 1 is not valid JSON/],
    ] as const) {
      const run = await execa('node', [CLI, 'plot', ...args], { cwd: ROOT, reject: false });
      assert.equal(run.exitCode, 1, `${args.join(' ')}: ${run.stdout}`);
      assert.equal(run.stderr.trim().split('\n').length, 1, run.stderr);
      assert.match(run.stderr.trim(), /^capsnet: /);
      assert.match(run.stderr.trim(), message);
    }
    assert.equal(readFileSync(join(dir, 'curves.svg'), 'utf8'), written);
  });
});
