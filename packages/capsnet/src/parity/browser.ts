/**
 * The browser backends: headless Chromium (playwright-core, the system's /usr/bin/chromium, never a download)
 * opens the parity page from a local server with COOP/COEP headers and runs onnxruntime-web's wasm and webgpu
 * through the bundled runtime (dist/web: shipped in the package, rebuilt from the sources in the repository).
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { ORT_WASM_FILES } from '@capsnet-onnx/runtime/wasm-assets';
import { readEnv } from '../env/env.ts';
import { webBundles } from '../web/paths.ts';
import type { MeasureResult, SpeedResult } from './measure.ts';
import { serveFiles } from './serve.ts';

export const CHROMIUM = readEnv('CAPSNET_CHROMIUM')!;

/**
 * Flags: no sandbox (containers), nothing that phones home, and WebGPU enabled. Not --disable-gpu: with it this
 * Chromium still offers SwiftShader, but on a machine with a GPU it would hide the real adapter.
 */
export const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-default-apps',
  '--enable-unsafe-webgpu',
];

export interface BrowserRun {
  device: 'wasm' | 'webgpu' | 'auto';
  count: number;
  latencyRuns: number;
}

export type BrowserReply = { ok: MeasureResult; adapter: string | null } | { skipped: string } | { error: string };

function decode(base64: string): Float32Array {
  const bytes = Buffer.from(base64, 'base64');
  return new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
}

/** Serves `files` (plus the built page and onnxruntime-web's .wasm) and runs `f` in headless Chromium; null: no Chromium. */
async function withHarness<T>(
  files: Record<string, string | Uint8Array>,
  timeoutMs: number,
  f: (openPage: () => Promise<{ page: import('playwright-core').Page; errors: string[] }>) => Promise<T>,
): Promise<T> {
  const { dir: outDir, ortDir } = await webBundles(true);
  const all: Record<string, string | Uint8Array> = {
    '/index.html': join(outDir, 'index.html'),
    '/parity-harness.js': join(outDir, 'parity-harness.js'),
    ...files,
  };
  // onnxruntime-web fetches its .wasm beside the harness bundle: served from the onnxruntime-web the bundle embeds.
  for (const name of ORT_WASM_FILES) all[`/${name}`] = join(ortDir, name);
  const server = await serveFiles(all);
  const { chromium } = await import('playwright-core');
  // launch() gives the browser a fresh temporary profile (its own --user-data-dir), removed on close.
  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS, timeout: 60_000 });
  try {
    return await f(async () => {
      const page = await browser.newPage();
      page.setDefaultTimeout(timeoutMs);
      const errors: string[] = [];
      page.on('pageerror', (e) => errors.push(e.message));
      await page.goto(`${server.origin}/`);
      await page.waitForFunction(() => 'capsnetHarness' in globalThis, undefined, { timeout: 60_000 });
      return { page, errors };
    });
  } finally {
    await browser.close();
    await server.close();
  }
}

function noChromium(): string | null {
  return existsSync(CHROMIUM) ? null : `no Chromium at ${CHROMIUM}: install it (Debian: apt-get install chromium) or set CAPSNET_CHROMIUM`;
}

/** Runs each request in one browser session; returns one reply per request, in order. */
export async function runInChromium(
  modelPath: string,
  decoderPath: string,
  images: Float32Array,
  masked: Float32Array,
  runs: BrowserRun[],
  log: (line: string) => void,
  timeoutMs = 300_000,
): Promise<BrowserReply[]> {
  const missing = noChromium();
  if (missing) return runs.map(() => ({ skipped: missing }));
  const files = {
    '/model.onnx': modelPath,
    '/model.decoder.onnx': decoderPath,
    '/inputs.bin': new Uint8Array(images.buffer, images.byteOffset, images.byteLength),
    '/masked.bin': new Uint8Array(masked.buffer, masked.byteOffset, masked.byteLength),
  };
  return withHarness(files, timeoutMs, async (openPage) => {
    const { page, errors } = await openPage();
    const env = await page.evaluate(() => (globalThis as any).capsnetHarness.environment());
    log(
      `chromium: ${env.userAgent.match(/HeadlessChrome\/\S+/)?.[0] ?? 'chromium'}, ` +
        `crossOriginIsolated=${env.crossOriginIsolated}, WebGPU adapter: ${env.webgpu ?? 'none'}`,
    );
    const replies: BrowserReply[] = [];
    for (const run of runs) {
      const unavailable = run.device === 'auto' ? null : (env.probe[run.device] as string | null);
      if (unavailable) {
        replies.push({ skipped: unavailable });
        continue;
      }
      try {
        const r = await page.evaluate((req) => (globalThis as any).capsnetHarness.run(req), {
          device: run.device,
          modelUrl: '/model.onnx',
          inputsUrl: '/inputs.bin',
          maskedUrl: '/masked.bin',
          count: run.count,
          latencyRuns: run.latencyRuns,
        });
        replies.push({
          ok: { ...r, lengths: decode(r.lengths), capsules: decode(r.capsules), reconstruction: decode(r.reconstruction), decoded: decode(r.decoded) },
          adapter: run.device === 'webgpu' ? env.webgpu : null,
        });
      } catch (e) {
        const message = (e as Error).message.split('\n')[0]!;
        // An fp16-compute model on an adapter without shader-f16 is not runnable on this hardware: a skip, with the reason.
        if (/lacks the shader-f16 feature/.test(message)) replies.push({ skipped: message.replace(/^.*?(device "webgpu")/, '$1') });
        else replies.push({ error: `${message}${errors.length ? ` (page errors: ${errors.join('; ')})` : ''}` });
      }
    }
    return replies;
  });
}

export interface PageSpeedRequest {
  /** onnxruntime-web wasm threads; undefined: its default (half the cores, at most 4, when cross-origin isolated). */
  threads?: number;
  batch: number;
  pixels: number;
  latencyRuns: number;
  throughputRuns: number;
}

export type PageSpeedReply =
  | { ok: SpeedResult & { deviceReport: string; threads: number; crossOriginIsolated: boolean; hardwareConcurrency: number; browser: string } }
  | { skipped: string }
  | { error: string };

/**
 * bench:infer in the page: onnxruntime-web's wasm provider in headless Chromium (cross-origin isolated, so
 * threads are allowed), one fresh page per request because ORT fixes its thread count at its first session.
 */
export async function benchWasmInChromium(
  modelPath: string,
  decoderPath: string,
  requests: PageSpeedRequest[],
  timeoutMs = 300_000,
): Promise<PageSpeedReply[]> {
  const missing = noChromium();
  if (missing) return requests.map(() => ({ skipped: missing }));
  return withHarness({ '/model.onnx': modelPath, '/model.decoder.onnx': decoderPath }, timeoutMs, async (openPage) => {
    const replies: PageSpeedReply[] = [];
    for (const request of requests) {
      const { page, errors } = await openPage();
      try {
        const env = await page.evaluate(() => (globalThis as any).capsnetHarness.environment());
        const r = await page.evaluate((req) => (globalThis as any).capsnetHarness.bench(req), { modelUrl: '/model.onnx', ...request });
        replies.push({ ok: { ...r, hardwareConcurrency: env.hardwareConcurrency, browser: env.userAgent.match(/HeadlessChrome\/\S+/)?.[0] ?? 'chromium' } });
      } catch (e) {
        replies.push({ error: `${(e as Error).message.split('\n')[0]}${errors.length ? ` (page errors: ${errors.join('; ')})` : ''}` });
      } finally {
        await page.close();
      }
    }
    return replies;
  });
}
