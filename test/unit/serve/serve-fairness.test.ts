/**
 * Issue 20, item 2: one client's uploads never hold another's. A PNG's inflated size is bounded by its header
 * before inflating (core/decode.ts), each image runs on a worker for a budget proportional to its pixels, images
 * are handed to workers round robin over clients and requests (serve/image-pool.ts), and /healthz is answered
 * outside the inference queue. The sweep's reproduction: 32 inflation bombs (28x28 header, IDAT inflating to
 * 100 MB) in one multipart kept ordinary uploads waiting 9.1-9.7 s; /healthz took 1.0-2.9 s under load.
 * These are latency bounds the issue asks for, with margins for a loaded 2-core machine.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { deflateSync } from 'node:zlib';
import { after, before, describe, test } from 'node:test';
import { decodeImage, ImageError, pngInflatedSize } from '@capsnet-onnx/core';
import { encodePng } from '../../../packages/capsnet/src/serve/images.ts';
import { ImagePool } from '../../../packages/capsnet/src/serve/image-pool.ts';
import { createServer, type CapsNetServer } from '../../../packages/capsnet/src/serve/server.ts';
import { FakeClassifier } from '../../support/serve.ts';

function crc32(bytes: Uint8Array): number {
  let crc = 0xffffffff;
  for (const b of bytes) {
    crc ^= b;
    for (let k = 0; k < 8; k++) crc = crc & 1 ? 0xedb88320 ^ (crc >>> 1) : crc >>> 1;
  }
  return (crc ^ 0xffffffff) >>> 0;
}

function chunk(type: string, data: Uint8Array): Buffer {
  const out = Buffer.alloc(12 + data.length);
  out.writeUInt32BE(data.length, 0);
  out.write(type, 4, 'latin1');
  Buffer.from(data).copy(out, 8);
  out.writeUInt32BE(crc32(out.subarray(4, 8 + data.length)), 8 + data.length);
  return out;
}

/** An 8-bit gray PNG whose IHDR says width x height and whose IDAT is `idat` (already zlib-compressed). */
function png(width: number, height: number, idat: Uint8Array, interlace = 0): Buffer {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8; // bit depth
  ihdr[12] = interlace;
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('IDAT', idat),
    chunk('IEND', new Uint8Array()),
  ]);
}

/** The sweep's bomb: a 28x28 header over an IDAT that inflates to ~100 MB (about 100 KB on the wire). */
const BOMB = png(28, 28, deflateSync(Buffer.alloc(100 * 1024 * 1024), { level: 9 }));
const digit = (seed: number) =>
  new Uint8Array(
    encodePng(
      Float32Array.from({ length: 784 }, (_, i) => (((i + seed) * 7) % 23 > 15 ? 1 : 0)),
      28,
      28,
      1,
    ),
  );

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;

describe('PNG inflation bound (core/decode.ts)', () => {
  test('the inflated size a header allows: rows of packed samples plus a filter byte, Adam7 per pass', () => {
    assert.equal(pngInflatedSize(28, 28, 8, 0, 0), 28 * 29);
    assert.equal(pngInflatedSize(10, 3, 1, 0, 0), 3 * (1 + 2));
    assert.equal(pngInflatedSize(2, 2, 16, 6, 0), 2 * (1 + 16));
    // Adam7 on 3x3: pass 1 1x1, pass 2 none, pass 3 none, pass 4 1x1, pass 5 2x1, pass 6 1x2, pass 7 3x1.
    const rgba = (w: number) => 1 + 4 * w;
    assert.equal(pngInflatedSize(3, 3, 8, 6, 1), rgba(1) + rgba(1) + rgba(2) + 2 * rgba(1) + rgba(3));
    assert.equal(pngInflatedSize(3, 3, 8, 5, 0), null);
  });

  test('a 28x28 PNG whose IDAT inflates to 100 MB is refused fast, naming the bound; an ordinary one decodes', () => {
    assert.ok(BOMB.length < 150_000, `${BOMB.length} bytes`);
    const started = performance.now();
    assert.throws(
      () => decodeImage(BOMB, undefined, 'bomb.png'),
      (e: unknown) => {
        assert.ok(e instanceof ImageError);
        assert.equal(e.code, 'TOO_LARGE');
        assert.match(e.message, /^bomb\.png: its pixel data inflates past the 812 bytes its 28x28 header allows/);
        return true;
      },
    );
    const ms = performance.now() - started;
    assert.ok(ms < 1000, `refusing the bomb took ${ms.toFixed(0)} ms (the old decoder: 3.6 s)`);
    assert.equal(decodeImage(digit(1)).width, 28);
    // One byte more than the header allows is refused too; exactly the allowed size is not.
    const exact = Buffer.alloc(28 * 29);
    assert.equal(decodeImage(png(28, 28, deflateSync(exact))).height, 28);
    assert.throws(() => decodeImage(png(28, 28, deflateSync(Buffer.alloc(28 * 29 + 1)))), /inflates past the 812 bytes/);
  });

  test('a corrupt zlib stream is one line naming the IDAT and the fix, the zlib text kept as the cause', () => {
    assert.throws(
      () => decodeImage(png(28, 28, Buffer.from('definitely not zlib data at all')), undefined, 'x.png'),
      (e: unknown) => {
        assert.ok(e instanceof ImageError);
        assert.equal(e.code, 'BAD_IMAGE');
        assert.match(e.message, /^x\.png: its compressed pixel data \(IDAT\) is not a valid zlib stream: the PNG is corrupt; re-save it/);
        assert.doesNotMatch(e.message, /\n/);
        assert.ok(e.cause instanceof Error);
        return true;
      },
    );
  });
});

describe('image pool: fair turns and per-image budgets', () => {
  test('round robin: a request of many images does not hold the pool; a small request goes next', async () => {
    const pool = new ImagePool({ threads: 1 });
    await pool.warmUp();
    try {
      const target = { shape: { height: 28, width: 28, channels: 1 }, preprocessing: { method: 'mnist', polarity: 'light-on-dark' } } as const;
      const big = Array.from({ length: 16 }, (_, i) => ({
        bytes: new Uint8Array(encodePng(new Float32Array(512 * 512).fill(i % 2), 512, 512, 1)),
        what: `big ${i}`,
      }));
      let bigDone = false;
      const heavy = pool.decode(big, target, 'auto', 'greedy').then(() => (bigDone = true));
      await new Promise((r) => setTimeout(r, 20));
      const small = await pool.decode([{ bytes: digit(3), what: 'small' }], target, 'auto', 'polite');
      assert.equal(small.length, 1);
      assert.equal(bigDone, false, 'the small request waited for all 16 large images');
      await heavy;
    } finally {
      await pool.close();
    }
  });

  test('an image over its budget is a DECODE_TIMEOUT naming the budget; the pool then serves the next', async () => {
    const pool = new ImagePool({ threads: 1, budget: { baseMs: 1, perPixelMs: 0 } });
    await pool.warmUp();
    try {
      const target = { shape: { height: 28, width: 28, channels: 1 }, preprocessing: { method: 'resize', polarity: 'any' } } as const;
      const large = new Uint8Array(
        encodePng(
          Float32Array.from({ length: 1024 * 1024 }, (_, i) => (i % 7) / 7),
          1024,
          1024,
          1,
        ),
      );
      await assert.rejects(pool.decode([{ bytes: large, what: 'large.png' }], target, 'auto'), (e: Error & { code?: string }) => {
        assert.equal(e.code, 'DECODE_TIMEOUT');
        assert.match(e.message, /decoding large\.png took longer than its budget of 1 ms/);
        return true;
      });
    } finally {
      await pool.close();
    }
  });
});

describe('serving: inflation bombs from one client, ordinary uploads from others', () => {
  let server: CapsNetServer;
  let base: string;
  const fake = new FakeClassifier();
  before(async () => {
    server = await createServer({ classifier: fake });
    base = await server.listen(0, '127.0.0.1');
  });
  after(async () => {
    await server.close();
  });

  const underAttack =
    '3 ordinary PNG uploads stay under 200 ms (median; 3x the quiet median on a loaded machine) while another client sends 32 bombs per request';
  test(underAttack, async () => {
    const bombs = new FormData();
    for (let i = 0; i < 32; i++) bombs.append(`f${i}`, new Blob([new Uint8Array(BOMB)], { type: 'image/png' }), `bomb${i}.png`);
    const bombBody = new Response(bombs);
    const bombType = bombBody.headers.get('content-type')!;
    const bombBytes = new Uint8Array(await bombBody.arrayBuffer());
    assert.ok(bombBytes.length > 3_000_000 && bombBytes.length < 4 * 1024 * 1024, `${bombBytes.length} bytes`);
    const upload = async (seed: number, latencies: number[]) => {
      const form = new FormData();
      form.append('file', new Blob([digit(seed)], { type: 'image/png' }), `${seed}.png`);
      const t = performance.now();
      const r = await fetch(`${base}/v1/classify?reconstruction=false`, { method: 'POST', body: form });
      const body = await r.json();
      latencies.push(performance.now() - t);
      assert.equal(r.status, 200, JSON.stringify(body).slice(0, 200));
    };
    // Warm up (the first uploads compile the pipeline), then the same uploads without the attack, for comparison.
    for (let k = 0; k < 5; k++) await upload(200 + k, []);
    const quiet: number[] = [];
    await Promise.all(
      [0, 1, 2].map(async (client) => {
        for (let k = 0; k < 4; k++) await upload(100 + client * 10 + k, quiet);
      }),
    );
    // The attacker is another process, as another client would be: its uploads cost the server, not the test's
    // own event loop. It posts the bombs two at a time until stopped and prints one status per answer.
    const dir = mkdtempSync(join(tmpdir(), 'capsnet-bombs-'));
    const bodyFile = join(dir, 'bombs.multipart');
    writeFileSync(bodyFile, bombBytes);
    const script = `
      const body = require('node:fs').readFileSync(${JSON.stringify(bodyFile)});
      const go = async () => { for (;;) { const t = performance.now();
        const r = await fetch(${JSON.stringify(`${base}/v1/classify`)}, { method: 'POST', headers: { 'content-type': ${JSON.stringify(bombType)} }, body });
        await r.arrayBuffer(); console.log(r.status, (performance.now() - t).toFixed(0)); } };
      go(); go();`;
    const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    let lines = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => (lines += c));
    while (!lines.includes('\n')) await new Promise((r) => setTimeout(r, 20)); // the attack is under way
    const latencies: number[] = [];
    // 3 clients, each uploading a few PNGs one after another, while the bombs keep coming.
    await Promise.all(
      [0, 1, 2].map(async (client) => {
        for (let k = 0; k < 4; k++) await upload(client * 10 + k, latencies);
      }),
    );
    const health: number[] = [];
    for (let k = 0; k < 5; k++) {
      const t = performance.now();
      const r = await fetch(`${base}/healthz`);
      await r.json();
      health.push(performance.now() - t);
      assert.equal(r.status, 200);
    }
    child.kill();
    await new Promise((r) => child.once('exit', r));
    rmSync(dir, { recursive: true, force: true });
    const answers = lines
      .trim()
      .split('\n')
      .map((l) => l.split(' ').map(Number) as [number, number]);
    const bombStatuses = answers.map((a) => a[0]);
    const bombMs = answers.map((a) => a[1]);
    assert.ok(bombStatuses.length > 0 && bombStatuses.every((s) => s === 413), `bomb statuses: ${bombStatuses.join(', ')}`);
    const m = median(latencies);
    console.log(
      `# decode bombs: ${bombStatuses.length} requests of 32 bombs (3.3 MB each) answered 413 in median ${median(bombMs).toFixed(0)} ms; ` +
        `ordinary uploads meanwhile: median ${m.toFixed(0)} ms, worst ${Math.max(...latencies).toFixed(0)} ms (${latencies.length}; ` +
        `without the attack: median ${median(quiet).toFixed(0)} ms); ` +
        `/healthz median ${median(health).toFixed(0)} ms`,
    );
    // The issue's bound is 200 ms (ordinary uploads take ~20 ms on an idle machine; the old code: 9.1-9.7 s). On a
    // machine loaded several times over even the quiet uploads take longer, so the bound is 200 ms or three times
    // the quiet median, whichever is larger: the attack may cost an ordinary upload at most that.
    const bound = Math.max(200, 3 * median(quiet));
    assert.ok(
      m < bound,
      `ordinary uploads took a median ${m.toFixed(0)} ms during the bombs (bound ${bound.toFixed(0)} ms; ` +
        `${median(quiet).toFixed(0)} ms without them): ${latencies.map((l) => l.toFixed(0)).join(', ')}`,
    );
  });

  test('/healthz answers under 100 ms while the inference queue is saturated', async () => {
    fake.delayMs = 300; // every run takes 300 ms: 64 queued requests keep the queue full for seconds
    try {
      await new Promise((r) => setTimeout(r, 1100)); // past the probe's one-second reuse: a fresh probe is due
      const load = Array.from({ length: 64 }, (_, k) =>
        fetch(`${base}/v1/classify?reconstruction=false`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ image: new Array(784).fill((k % 10) / 10) }),
        }),
      );
      while (!server.stats().classify.inFlight) await new Promise((r) => setTimeout(r, 5)); // saturated
      const health: number[] = [];
      for (let k = 0; k < 5; k++) {
        const t = performance.now();
        const r = await fetch(`${base}/healthz`);
        const body = await r.json();
        health.push(performance.now() - t);
        assert.equal(r.status, 200);
        assert.ok(body.inference.running || body.inference.queued > 0, JSON.stringify(body));
        await new Promise((r) => setTimeout(r, 100));
      }
      const statuses = await Promise.all(load.map(async (p) => (await p).status));
      assert.ok(statuses.every((s) => s === 200));
      console.log(`# /healthz while saturated: ${health.map((h) => h.toFixed(0)).join(', ')} ms`);
      assert.ok(median(health) < 100, `/healthz took ${health.map((h) => h.toFixed(0)).join(', ')} ms`);
    } finally {
      fake.delayMs = 0;
    }
  });
});
