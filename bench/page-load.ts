/**
 * `npm run bench:page`: the serve page's time to first classification in headless Chromium (playwright-core,
 * /usr/bin/chromium or CAPSNET_CHROMIUM), per browser entry of @capsnet-onnx/runtime, cold (a fresh browser
 * context: empty HTTP cache) and warm (a second visit in the same context). For each entry the page's script
 * (/web/page.js, serve/page/app.ts) is bundled with that entry in place of `@capsnet-onnx/runtime/web`, with code
 * splitting as `npm run build:web` bundles it (--unsplit: one file, as before the split), and served by the real
 * server (serve/server.ts, in this process) with the page, the model and onnxruntime-web's files:
 *
 *   web      @capsnet-onnx/runtime/web: device auto imports onnxruntime-web's plain wasm build unless it tries WebGPU
 *   wasm     @capsnet-onnx/runtime/web/wasm: the plain wasm build only
 *   webgpu   @capsnet-onnx/runtime/web/webgpu: the JSEP build, which `/web` fetched for every device before
 *
 * Each entry gets a fresh browser profile (with a disk cache, as a user's browser has). A visit: open the page, wait
 * until the model is loaded (the device badge names a device), draw one stroke on the
 * pad, wait for the prediction. Reported per visit: seconds to the model being ready and to the first prediction,
 * and the bytes the browser received (304 answers and cache hits carry none). Results go to
 * bench-results/page-load.json (temp file + rename).
 *
 *   npm run bench:page -- [--model model.onnx] [--entries web,wasm,webgpu] [--rounds 1] [--preset small|paper] [--unsplit]
 *
 * Without --model it exports a CapsNet of the given preset with seeded random weights (timing does not depend on
 * training). Rounds alternate the entries' order (A B C, C B A) so that the machine's load hits them alike.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { build, type Plugin } from 'esbuild';
import { chromium } from 'playwright-core';
import { decoderPathFor, presetConfig } from '@capsnet-onnx/core';
import { CapsNet } from '@capsnet-onnx/runtime/node';
import { CHROMIUM, CHROMIUM_ARGS } from '../packages/capsnet/src/parity/browser.ts';
import { buildCapsNetModels, recordDecoderHash } from '../packages/capsnet/src/export/exporter.ts';
import { encodeModel } from '../packages/capsnet/src/export/onnx-schema.ts';
import { createServer } from '../packages/capsnet/src/serve/server.ts';
import { PAGE_SPLIT } from '../packages/capsnet/src/web/build.ts';
import { syntheticWeights } from '../test/support/tiny-model.ts';
import { benchArgs, existingPath, machineInfo, writeReport } from './harness.ts';

const ROOT = resolve(dirname(new URL(import.meta.url).pathname), '..');
const ENTRIES = {
  web: "export * from '@capsnet-onnx/runtime/web';",
  // The page also imports the WebGPU adapter helpers; they are small and import no onnxruntime-web.
  wasm: "export * from '@capsnet-onnx/runtime/web/wasm';\nexport { describeAdapter, webGpuAdapterInfo } from './packages/runtime/src/providers/web-webgpu.ts';",
  webgpu: "export * from '@capsnet-onnx/runtime/web/webgpu';",
} as const;
type Entry = keyof typeof ENTRIES;

const { values: args } = benchArgs(
  import.meta.url,
  {
    options: {
      model: { type: 'string' },
      preset: { type: 'string', default: 'small' },
      entries: { type: 'string', default: 'web,wasm,webgpu' },
      rounds: { type: 'string', default: '1' },
      timeout: { type: 'string', default: '120' },
      out: { type: 'string', default: join(ROOT, 'bench-results', 'page-load.json') },
      unsplit: { type: 'boolean', default: false },
    },
  },
  { rounds: 'count', timeout: 'seconds' },
);
const entries = args.entries.split(',').map((e) => e.trim()) as Entry[];
for (const e of entries) if (!(e in ENTRIES)) throw new Error(`--entries: unknown entry "${e}": use ${Object.keys(ENTRIES).join(', ')}`);
const ROUNDS = Number(args.rounds);
if (!Number.isInteger(ROUNDS) || ROUNDS < 1) throw new Error(`--rounds must be a positive integer, got ${args.rounds}`);
const TIMEOUT_MS = Number(args.timeout) * 1000;

interface Visit {
  /** Seconds from navigation to the model loaded (badge shows a device). */
  readyS: number;
  /** Seconds from navigation to the first prediction shown. */
  firstClassificationS: number;
  /** Bytes of response bodies the browser received over the network. */
  bytes: number;
  /** Bytes received per URL path (summed over its requests). */
  byPath: Record<string, number>;
  /** Responses per status (304: revalidated, nothing downloaded). */
  statuses: Record<string, number>;
  device: string;
}

function syntheticModel(dir: string): string {
  const config = presetConfig(args.preset as 'small' | 'paper');
  const weights = syntheticWeights(config, 1, (name) => (name === 'digit/W' ? 0.5 : 0.05));
  const built = buildCapsNetModels(config, weights, {
    classLabels: Array.from({ length: config.numClasses }, (_, k) => String(k)),
    dataset: 'synthetic',
    testAccuracy: 0,
    checkpointSha256: '0'.repeat(64),
    exportedAt: new Date('2024-01-01T00:00:00.000Z'),
  });
  const decoder = encodeModel(built.decoder);
  recordDecoderHash(built.model, decoder);
  const model = join(dir, 'model.onnx');
  writeFileSync(model, encodeModel(built.model));
  writeFileSync(decoderPathFor(model), decoder);
  return model;
}

/** The page's /web/page.js with `@capsnet-onnx/runtime/web` replaced by one entry, bundled like `npm run build:web`. */
async function bundle(entry: Entry, outDir: string): Promise<{ pageJs: number; total: number }> {
  const entryFile = join(outDir, '..', `entry-${entry}.ts`);
  writeFileSync(entryFile, ENTRIES[entry].replaceAll('./packages/', `${ROOT}/packages/`));
  // The page imports `@capsnet-onnx/runtime/web`; the entry file (which may import it itself) takes its place.
  const swap: Plugin = {
    name: 'entry',
    setup(b) {
      b.onResolve({ filter: /^@capsnet-onnx\/runtime\// }, async (a) => {
        if (a.importer !== entryFile) return a.path === '@capsnet-onnx/runtime/web' ? { path: entryFile } : undefined;
        // The entry file lives in the temp folder, where no node_modules is: resolve its imports from the repository.
        const r = await b.resolve(a.path, { kind: a.kind, resolveDir: join(ROOT, 'packages', 'capsnet') });
        return r.errors.length > 0 ? { errors: r.errors } : { path: r.path };
      });
    },
  };
  const result = await build({
    entryPoints: { page: join(ROOT, 'packages', 'capsnet', 'src', 'serve', 'page', 'app.ts') },
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: 'es2022',
    minify: true,
    ...(args.unsplit ? {} : PAGE_SPLIT),
    outdir: outDir,
    conditions: ['capsnet-source'],
    plugins: entry === 'web' ? [] : [swap],
    logLevel: 'warning',
    metafile: true,
  });
  const outputs = Object.entries(result.metafile.outputs);
  return { pageJs: outputs.find(([f]) => f.endsWith('/page.js'))?.[1].bytes ?? 0, total: outputs.reduce((n, [, o]) => n + o.bytes, 0) };
}

async function visit(context: import('playwright-core').BrowserContext, url: string): Promise<Visit> {
  const page = await context.newPage();
  const statuses: Record<string, number> = {};
  let bytes = 0;
  const byPath: Record<string, number> = {};
  const pending: Promise<void>[] = [];
  page.on('requestfinished', (request) => {
    pending.push(
      (async () => {
        const response = await request.response();
        const status = String(response?.status() ?? 'none');
        statuses[status] = (statuses[status] ?? 0) + 1;
        const size = Math.max(0, (await request.sizes()).responseBodySize); // -1: served from the cache
        bytes += size;
        const path = new URL(request.url()).pathname;
        byPath[path] = (byPath[path] ?? 0) + size;
      })().catch(() => {}),
    );
  });
  try {
    const started = performance.now();
    await page.goto(url, { waitUntil: 'commit' });
    await page.waitForFunction(() => /^(WASM|WebGPU)/.test(document.getElementById('device-badge')?.textContent ?? ''), null, { timeout: TIMEOUT_MS });
    const readyS = (performance.now() - started) / 1000;
    const box = await page.locator('#pad').boundingBox();
    if (!box) throw new Error('the page has no #pad to draw on');
    await page.mouse.move(box.x + box.width * 0.5, box.y + box.height * 0.2);
    await page.mouse.down();
    for (let i = 1; i <= 8; i++) await page.mouse.move(box.x + box.width * 0.5, box.y + box.height * (0.2 + 0.075 * i));
    await page.mouse.up();
    await page.waitForFunction(() => !/^\s*[–-]?\s*$/.test(document.getElementById('prediction')?.textContent ?? ''), null, { timeout: TIMEOUT_MS });
    const firstClassificationS = (performance.now() - started) / 1000;
    const device = (await page.locator('#device-badge').textContent()) ?? '';
    await page.waitForLoadState('networkidle').catch(() => {});
    await Promise.all(pending);
    return { readyS, firstClassificationS, bytes, byPath, statuses, device };
  } finally {
    await page.close();
  }
}

const work = mkdtempSync(join(tmpdir(), 'capsnet-page-load-'));
try {
  const model = args.model ? existingPath(args.model, '--model') : syntheticModel(work);
  const decoder = decoderPathFor(model);
  const [modelBytes, decoderBytes] = [readFileSync(model), readFileSync(decoder)];
  const classifier = await CapsNet.load(modelBytes, { device: 'cpu', decoder: decoderBytes });
  const bundles = new Map<Entry, { dir: string; bytes: { pageJs: number; total: number } }>();
  for (const entry of entries) {
    const dir = join(work, `web-${entry}`);
    bundles.set(entry, { dir, bytes: await bundle(entry, dir) });
  }
  console.log(
    `bench:page: model ${(modelBytes.length / 1e6).toFixed(1)} MB + decoder ${(decoderBytes.length / 1e6).toFixed(1)} MB, ` +
      `entries ${entries.join(', ')}, ${ROUNDS} round(s); load average ${loadavg()[0]!.toFixed(2)} on ${machineInfo().cpus} CPUs`,
  );
  const visits = new Map<Entry, { cold: Visit[]; warm: Visit[] }>(entries.map((e) => [e, { cold: [], warm: [] }]));
  try {
    for (let round = 0; round < ROUNDS; round++) {
      for (const entry of round % 2 ? [...entries].reverse() : entries) {
        const server = await createServer({ classifier, modelPath: model, decoderPath: decoder, modelBytes, decoderBytes, webDir: bundles.get(entry)!.dir });
        const url = await server.listen(0, '127.0.0.1');
        // A browser profile of its own (a disk cache, as a user's browser has): empty for the cold visit.
        const profile = mkdtempSync(join(work, 'profile-'));
        const context = await chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, args: CHROMIUM_ARGS });
        try {
          const cold = await visit(context, url);
          const warm = await visit(context, url);
          visits.get(entry)!.cold.push(cold);
          visits.get(entry)!.warm.push(warm);
          console.log(
            `  ${entry.padEnd(6)} cold ${cold.firstClassificationS.toFixed(2)} s (${(cold.bytes / 1e6).toFixed(1)} MB), ` +
              `warm ${warm.firstClassificationS.toFixed(2)} s (${(warm.bytes / 1e6).toFixed(1)} MB, ${warm.statuses['304'] ?? 0} x 304); ${cold.device}`,
          );
        } finally {
          await context.close();
          await server.close();
          rmSync(profile, { recursive: true, force: true });
        }
      }
    }
  } finally {
    await classifier.dispose();
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)]!;
  const rows = entries.map((entry) => {
    const v = visits.get(entry)!;
    return {
      entry,
      pageJsBytes: bundles.get(entry)!.bytes.pageJs,
      bundleBytes: bundles.get(entry)!.bytes.total,
      split: !args.unsplit,
      cold: {
        readyS: median(v.cold.map((x) => x.readyS)),
        firstClassificationS: median(v.cold.map((x) => x.firstClassificationS)),
        bytes: median(v.cold.map((x) => x.bytes)),
      },
      warm: {
        readyS: median(v.warm.map((x) => x.readyS)),
        firstClassificationS: median(v.warm.map((x) => x.firstClassificationS)),
        bytes: median(v.warm.map((x) => x.bytes)),
      },
      device: v.cold[0]!.device,
      visits: v,
    };
  });
  console.log(
    `\nentry   page.js / all chunks (${args.unsplit ? 'one file' : 'split'})   cold: ready  first class.  received   ` +
      'warm: ready  first class.  received   device',
  );
  for (const r of rows) {
    console.log(
      `${r.entry.padEnd(7)} ${`${(r.pageJsBytes / 1e3).toFixed(0)} KB / ${(r.bundleBytes / 1e3).toFixed(0)} KB`.padStart(17)}              ` +
        `${r.cold.readyS.toFixed(2).padStart(9)} s ${r.cold.firstClassificationS.toFixed(2).padStart(9)} s ` +
        `${(r.cold.bytes / 1e6).toFixed(1).padStart(8)} MB   ${r.warm.readyS.toFixed(2).padStart(9)} s ` +
        `${r.warm.firstClassificationS.toFixed(2).padStart(9)} s ` +
        `${(r.warm.bytes / 1e6).toFixed(1).padStart(8)} MB   ${r.device}`,
    );
  }
  const web = rows.find((r) => r.entry === 'web');
  const jsep = rows.find((r) => r.entry === 'webgpu');
  const ratio = web && jsep ? jsep.cold.firstClassificationS / web.cold.firstClassificationS : null;
  if (ratio !== null) console.log(`\nold/new, cold first classification: JSEP build (what /web fetched before) / /web now = ${ratio.toFixed(2)}x`);
  if (web)
    console.log(
      `budget: /web cold first classification ${web.cold.firstClassificationS.toFixed(2)} s, ${web.cold.firstClassificationS <= 8 ? 'within' : 'OVER'} 8 s`,
    );
  writeReport(args.out, {
    bench: 'page-load',
    command: `npm run bench:page -- ${process.argv.slice(2).join(' ')}`.trim(),
    machine: machineInfo(),
    loadAverage: loadavg(),
    model: { path: args.model ?? `synthetic ${args.preset}`, bytes: modelBytes.length, decoderBytes: decoderBytes.length },
    oldOverNewCold: ratio,
    results: rows,
  });
  console.log(`wrote ${args.out}`);
} finally {
  rmSync(work, { recursive: true, force: true });
}
