// The test tiers: `node scripts/test.mjs quick|e2e|all [files...]` runs test/*.test.ts of that tier with node --test,
// TypeScript through tsx and the workspace packages resolved to their sources.
//   quick  the unit tier (`npm run test:quick`, under 3 minutes on 2 cores): needs only `npm ci`
//   e2e    the files named in E2E below: Chromium, SwiftShader's WebGPU, registry installs, SIGKILL, strace
//   all    both (`npm test`, which CI runs)
// A file is in the quick tier unless E2E names it; a name in E2E that matches no file is an error.
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

/** The end-to-end tier, each with what makes it slow or what it needs beyond `npm ci`. */
const E2E = {
  'docs-api.test.ts': 'TypeDoc over the packages (about 40 s of CPU each run, twice)',
  'publish-dry-run.test.ts': 'npm pack and npm publish --dry-run of each package (each builds itself first)',
  'consumers.test.ts': 'packs the tarballs and installs fresh apps from the npm registry, twice (lowest and newest versions)',
  'readme-commands.test.ts': 'copies the repository, runs npm ci, npm start and every README command in it',
  'runtime-browser.test.ts': 'headless Chromium',
  'serve-page.test.ts': 'headless Chromium, WebGPU on SwiftShader',
  'serve-page-hostile.test.ts': 'headless Chromium',
  'parity.test.ts': 'every backend, Chromium included',
  'export-parity.test.ts': 'trains and checks exports across backends',
  'export-webgpu.test.ts': "onnxruntime-node's WebGPU on SwiftShader",
  'faults.test.ts': 'SIGKILLs training and export many times',
  'triton-faults.test.ts': 'SIGKILLs export --triton at each of its steps (about 30 child processes)',
  'durable-files.test.ts': 'strace',
  'datasets-e2e.test.ts': 'trains on every data set format, Fashion-MNIST from Debian',
  'experiments.test.ts': "runs the paper's experiments at ci scale",
  'image-corpus.test.ts': 'trains a model, then the image corpus through the CLI, HTTP and the runtime',
  'export-precision.test.ts': 'fp16 and int8 exports checked on onnxruntime-node and onnxruntime-web',
  'train.test.ts': 'several CLI training runs',
  'wasm-capsule-kernels.test.ts': 'recompiles the AssemblyScript kernels and checks them against the cpu backend',
  'serve-model.test.ts': 'capsnet serve processes on a trained model',
  'gpu-table.test.ts': 'every GPU-table step, on SwiftShader',
  'gpu-bundle.test.ts': 'builds the offline GPU bundle (xz) and runs it without network on SwiftShader',
  'parity-memory.test.ts': 'runs capsnet parity on 24 and on 500 inputs (two minutes: the tfjs reference on 500 images)',
};

const [tier = 'all', ...only] = process.argv.slice(2);
if (!['quick', 'e2e', 'all'].includes(tier)) {
  console.error(`scripts/test.mjs: unknown tier ${tier}: use quick, e2e or all`);
  process.exit(2);
}
const testDir = join(ROOT, 'test');
const files = readdirSync(testDir)
  .filter((f) => f.endsWith('.test.ts'))
  .sort();
const stale = Object.keys(E2E).filter((f) => !files.includes(f));
if (stale.length) {
  console.error(`scripts/test.mjs: E2E names files that do not exist: ${stale.join(', ')}`);
  process.exit(2);
}
const chosen = files
  .filter((f) => tier === 'all' || (tier === 'e2e') === f in E2E)
  .filter((f) => only.length === 0 || only.some((o) => f.includes(o)))
  .map((f) => join('test', f));
if (chosen.length === 0) {
  console.error(`scripts/test.mjs: no test file in tier ${tier}${only.length ? ` matches ${only.join(' ')}` : ''}`);
  process.exit(2);
}
const nodeOptions = `${process.env.NODE_OPTIONS ?? ''} --conditions=capsnet-source`.trim();
// The unit tier runs two files at a time (one per core: 2m24s instead of 4m28s here); the end-to-end files, which
// time servers under load and drive Chromium, one at a time.
const concurrency = tier === 'quick' ? 2 : 1;
const result = spawnSync(process.execPath, ['--import', 'tsx', '--test', `--test-concurrency=${concurrency}`, ...chosen], {
  cwd: ROOT,
  stdio: 'inherit',
  env: { ...process.env, NODE_OPTIONS: nodeOptions },
});
process.exit(result.status ?? 1);
