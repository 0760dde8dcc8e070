/**
 * Digits as people hand them over (issue 10), end to end on the small trained model: the corpus of
 * packages/capsnet/src/data/corpus.ts (embedded test digits as MNIST stores them, on white paper, on a transparent
 * canvas off centre, small in a corner of a sheet, photographed as JPEG; and blanks) classified through the CLI,
 * the HTTP server and the runtime. Each style must be within 5 points of the plain digits' accuracy, blanks must be
 * "no digit", and the three paths must give the same label for every image.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { decodeImage } from '@capsnet-onnx/core';
import type { Classification, Classifier } from '@capsnet-onnx/runtime/node';
import { execa } from 'execa';
import { type CorpusImage, DIGIT_STYLES, makeDigitCorpus } from '../../packages/capsnet/src/data/corpus.ts';
import { CLI, ROOT } from '../support/fixtures.ts';
import { exportedSmallModel, startServeProcess } from '../support/serve.ts';

/** Digits per style: enough that 5 points is a few digits, few enough for a lean test. */
const COUNT = 100;
const TOLERANCE = 0.05;

/** The near-tie rule of the parity checks: labels may differ only where the top two lengths are this close. */
const NEAR_TIE = 1e-4;

describe('the corpus through the CLI, HTTP and the runtime (small trained model)', () => {
  let dir: string;
  let model: string;
  let corpus: CorpusImage[];
  let direct: Classifier;
  let server: Awaited<ReturnType<typeof startServeProcess>>;
  const runtime = new Map<string, Classification>();
  const cli = new Map<string, number | null>();
  const http = new Map<string, number | null>();

  before(async () => {
    model = await exportedSmallModel();
    corpus = makeDigitCorpus(COUNT, 7);
    dir = mkdtempSync(join(tmpdir(), 'capsnet-corpus-'));
    for (const image of corpus) {
      mkdirSync(join(dir, image.style), { recursive: true });
      writeFileSync(join(dir, image.file), image.bytes);
    }
    const { CapsNet } = await import('@capsnet-onnx/runtime/node');
    direct = await CapsNet.load(model, { device: 'cpu' });
    // The runtime: the decoded picture as { data, width, height }, through classify's own pipeline.
    for (const image of corpus) runtime.set(image.file, (await direct.classify(decodeImage(image.bytes)))[0]!);
    // The CLI: the whole folder in one run.
    const out = await execa('node', [CLI, 'classify', model, dir, '--device', 'cpu', '--json'], { cwd: ROOT });
    for (const r of JSON.parse(out.stdout).results as Array<{ image: string; label: number | null }>) cli.set(r.image.slice(dir.length + 1), r.label);
    // HTTP: multipart uploads of 16 files, PNG and JPEG as sent.
    server = await startServeProcess(model, ['--device', 'cpu', '--max-batch', '16']);
    for (let start = 0; start < corpus.length; start += 16) {
      const form = new FormData();
      const part = corpus.slice(start, start + 16);
      for (const image of part)
        form.append('image', new Blob([Uint8Array.from(image.bytes)], { type: image.file.endsWith('.jpg') ? 'image/jpeg' : 'image/png' }), image.file);
      const response = await fetch(`${server.url}/v1/classify?reconstruction=false`, { method: 'POST', body: form });
      const json = await response.json();
      assert.equal(response.status, 200, JSON.stringify(json));
      json.results.forEach((r: { label: number | null }, i: number) => http.set(part[i]!.file, r.label));
    }
  });

  after(async () => {
    await direct?.dispose();
    if (server) assert.equal(await server.stop(), 0, server.output());
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('every path gives the same label for every image', () => {
    for (const image of corpus) {
      const r = runtime.get(image.file)!;
      const sorted = Array.from(r.lengths).sort((a, b) => b - a);
      if (sorted[0]! - sorted[1]! < NEAR_TIE) continue;
      assert.equal(cli.get(image.file), r.label, `${image.file}: CLI ${cli.get(image.file)}, runtime ${r.label}`);
      assert.equal(http.get(image.file), r.label, `${image.file}: HTTP ${http.get(image.file)}, runtime ${r.label}`);
    }
  });

  test('each style is within 5 points of the plain digits, on every path; blanks are "no digit"', () => {
    const table: string[] = [];
    for (const [path, labels] of [
      ['runtime', new Map([...runtime].map(([f, r]) => [f, r.label]))],
      ['CLI', cli],
      ['HTTP', http],
    ] as const) {
      const accuracy = (style: string) => {
        const images = corpus.filter((i) => i.style === style);
        return images.filter((i) => labels.get(i.file) === i.label).length / images.length;
      };
      const plain = accuracy('mnist');
      assert.ok(plain >= 0.7, `${path}: the fixture model gets ${plain} of the plain digits`);
      for (const style of DIGIT_STYLES) {
        const a = accuracy(style);
        table.push(`${path} ${style} ${(100 * a).toFixed(0)}%`);
        assert.ok(a >= plain - TOLERANCE, `${path}: ${style} ${a} vs plain ${plain}`);
      }
      for (const style of ['blank-paper', 'blank-canvas', 'blank-photo']) assert.equal(accuracy(style), 1, `${path}: ${style} images got digit labels`);
    }
    console.log(table.join('\n'));
  });

  test('a blank image says why there is no digit', () => {
    const blank = corpus.find((i) => i.style === 'blank-canvas')!;
    assert.equal(runtime.get(blank.file)!.reason, 'no ink: the image is blank');
  });
});
