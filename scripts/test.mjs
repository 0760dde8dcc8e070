// The test tiers: `node scripts/test.mjs quick|e2e|all [files...]` runs the test files of that tier with node --test,
// TypeScript through tsx and the workspace packages resolved to their sources.
//   quick  test/unit/<layer>/*.test.ts (`npm run test:quick`, under 3 minutes on 2 cores): needs only `npm ci`
//   e2e    test/e2e/*.test.ts: Chromium, SwiftShader's WebGPU, registry installs, SIGKILL, strace
//   all    both (`npm test`, which CI runs)
// Every end-to-end file says in E2E below what makes it slow; a test file anywhere else under test/ is an error.
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

/** The end-to-end tier (test/e2e/), each file with what makes it slow or what it needs beyond `npm ci`. */
const E2E = {
  'docs-api.test.ts': 'TypeDoc over the packages (about 40 s of CPU each run, twice)',
  'publish-dry-run.test.ts': 'npm publish --dry-run of each package (each builds itself first, unless already built from the same sources)',
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
const unitFiles = readdirSync(join(ROOT, 'test', 'unit'), { recursive: true, encoding: 'utf8' })
  .filter((f) => f.endsWith('.test.ts'))
  .map((f) => join('test', 'unit', f));
const e2eNames = readdirSync(join(ROOT, 'test', 'e2e')).filter((f) => f.endsWith('.test.ts'));
const stray = readdirSync(join(ROOT, 'test'), { recursive: true, encoding: 'utf8' }).filter(
  (f) => f.endsWith('.test.ts') && !f.startsWith(`unit/`) && !f.startsWith(`e2e/`) && !f.includes('node_modules'),
);
const problems = [
  ...stray.map((f) => `test/${f} is in neither tier: move it to test/unit/<layer>/ or test/e2e/`),
  ...e2eNames.filter((f) => !(f in E2E)).map((f) => `test/e2e/${f} has no reason in E2E: add one`),
  ...Object.keys(E2E)
    .filter((f) => !e2eNames.includes(f))
    .map((f) => `E2E names ${f}, which is not in test/e2e/`),
];
if (problems.length) {
  console.error(`scripts/test.mjs: ${problems.join('; ')}`);
  process.exit(2);
}
const tiers = { quick: unitFiles, e2e: e2eNames.map((f) => join('test', 'e2e', f)), all: [] };
tiers.all = [...tiers.quick, ...tiers.e2e];
const chosen = tiers[tier].sort().filter((f) => only.length === 0 || only.some((o) => f.includes(o)));
if (chosen.length === 0) {
  console.error(`scripts/test.mjs: no test file in tier ${tier}${only.length ? ` matches ${only.join(' ')}` : ''}`);
  process.exit(2);
}
const nodeOptions = `${process.env.NODE_OPTIONS ?? ''} --conditions=capsnet-source`.trim();
// The unit files run two at a time (one per core: 2m49s instead of about 5 minutes here), in `all` too; the
// end-to-end files, which time servers under load and drive Chromium, one at a time. `all` runs both and fails if either does.
const groups = [
  { files: chosen.filter((f) => f.startsWith(join('test', 'unit'))), concurrency: 2 },
  { files: chosen.filter((f) => f.startsWith(join('test', 'e2e'))), concurrency: 1 },
].filter((g) => g.files.length > 0);
let status = 0;
for (const { files: group, concurrency } of groups) {
  const result = spawnSync(process.execPath, ['--import', 'tsx', '--test', `--test-concurrency=${concurrency}`, ...group], {
    cwd: ROOT,
    stdio: 'inherit',
    env: { ...process.env, NODE_OPTIONS: nodeOptions },
  });
  if (result.status !== 0) status = result.status ?? 1;
}
process.exit(status);
