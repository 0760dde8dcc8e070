/**
 * The layers flow one way. Every source folder may import only the folders listed for it below (and npm packages
 * that are not forbidden to it); any other edge fails with the file and the import. The table is the
 * architecture: see the README's "Layout".
 *
 *   core (pure)  <-  runtime (core + ONNX Runtime)
 *   core  <-  files (atomic writes, checkpoint format)  <-  data  <-  train (the loop, run directory, train/backends/)
 *   core  <-  model (the networks in TensorFlow.js: layers, routing, CapsNet, baseline CNN)  <-  train
 *   core, files  <-  export (never TensorFlow.js, not even through another module)  <-  train/backends/ort-conv.ts
 *     (its graph builder writes the convolution graphs that onnxruntime runs for the wasm backend)
 *   serve, parity, experiments above them; then the CLI; benchmarks and tests over everything.
 */
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, test } from 'node:test';
import { ROOT } from '../../support/fixtures.ts';

const CAPSNET = 'packages/capsnet/src';
/** folder -> the folders it may import (itself always). */
const ALLOWED: Record<string, string[]> = {
  'packages/core/src': [],
  'packages/runtime/src': ['packages/core/src'],
  // The pretrained models: files and their cards, loadable in Node and browsers, importing nothing.
  'packages/mnist/src': [],
  // The package's CAPSNET_* environment variables (env/env.ts): Node's process.env only, for every layer above.
  [`${CAPSNET}/env`]: [],
  [`${CAPSNET}/files`]: ['packages/core/src'],
  [`${CAPSNET}/data`]: ['packages/core/src', `${CAPSNET}/files`],
  [`${CAPSNET}/model`]: ['packages/core/src'],
  // train -> export: train/backends/ort-conv.ts builds its ONNX graphs with export's GraphBuilder.
  [`${CAPSNET}/train`]: ['packages/core/src', `${CAPSNET}/files`, `${CAPSNET}/data`, `${CAPSNET}/model`, `${CAPSNET}/env`, `${CAPSNET}/export`],
  [`${CAPSNET}/export`]: ['packages/core/src', `${CAPSNET}/files`],
  [`${CAPSNET}/web`]: ['packages/runtime/src'],
  [`${CAPSNET}/api`]: ['packages/core/src', 'packages/runtime/src', `${CAPSNET}/files`, `${CAPSNET}/export`],
  [`${CAPSNET}/serve`]: ['packages/core/src', 'packages/runtime/src', `${CAPSNET}/data`, `${CAPSNET}/files`, `${CAPSNET}/web`],
  [`${CAPSNET}/parity`]: [
    'packages/core/src',
    'packages/runtime/src',
    `${CAPSNET}/files`,
    `${CAPSNET}/data`,
    `${CAPSNET}/model`,
    `${CAPSNET}/train`,
    `${CAPSNET}/export`,
    `${CAPSNET}/web`,
    `${CAPSNET}/env`,
  ],
  [`${CAPSNET}/experiments`]: [
    'packages/core/src',
    'packages/runtime/src',
    `${CAPSNET}/files`,
    `${CAPSNET}/data`,
    `${CAPSNET}/model`,
    `${CAPSNET}/train`,
    `${CAPSNET}/export`,
  ],
  [`${CAPSNET}/cli`]: ['*'],
  bench: ['*', 'test/support'],
  // Repository scripts (npm start's demo, packaging the pretrained models) sit at the top, like the CLI.
  scripts: ['*'],
  // The package's build scripts (tsc, bundles, the wasm kernels): standalone .mjs that import no project code.
  'packages/capsnet/scripts': [],
  test: ['*'],
};
/** npm packages (and Node built-ins) a folder must not import. */
const FORBIDDEN_PACKAGES: Record<string, RegExp> = {
  'packages/core/src': /^(node:|@tensorflow\/|onnxruntime-|fastify|esbuild)/,
  'packages/mnist/src': /^(node:|@tensorflow\/|onnxruntime-|fastify|esbuild)/,
  'packages/runtime/src': /^(@tensorflow\/|fastify|esbuild|protobufjs|capsnet-onnx)/,
  [`${CAPSNET}/export`]: /^@tensorflow\//,
};
const PACKAGE_DIRS: Record<string, string> = {
  '@capsnet-onnx/core': 'packages/core/src',
  '@capsnet-onnx/runtime': 'packages/runtime/src',
  '@capsnet-onnx/mnist': 'packages/mnist/src',
};
const PROJECT_FOLDERS = Object.keys(ALLOWED)
  .filter((f) => f !== 'test')
  .concat('test/support');

function sourceFiles(dir: string): string[] {
  return readdirSync(join(ROOT, dir), { recursive: true, encoding: 'utf8' })
    .filter((f) => /\.(ts|mts|mjs|js)$/.test(f) && !f.includes('node_modules'))
    .map((f) => join(dir, f));
}

/** Static and dynamic import specifiers of a file (comments and strings in code are rare enough here). */
function importsOf(file: string): string[] {
  const text = readFileSync(join(ROOT, file), 'utf8');
  const found: string[] = [];
  for (const m of text.matchAll(/(?:^|\n)\s*(?:import|export)\s[^'";]*?from\s*'([^']+)'|(?:^|\n)\s*import\s*'([^']+)'|\bimport\(\s*'([^']+)'\s*\)/g)) {
    found.push((m[1] ?? m[2] ?? m[3])!);
  }
  return found;
}

/** The layer folder a repository path belongs to (the longest matching prefix). */
function folderOf(path: string): string | undefined {
  return [...PROJECT_FOLDERS, 'test'].filter((f) => path === f || path.startsWith(`${f}/`)).sort((a, b) => b.length - a.length)[0];
}

/** An import as a repository path (project code) or as a package name. */
function target(file: string, spec: string): { path?: string; pkg?: string } {
  if (spec.startsWith('.')) return { path: relative(ROOT, resolve(ROOT, dirname(file), spec)) };
  const name = spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0]!;
  if (PACKAGE_DIRS[name]) return { path: PACKAGE_DIRS[name] };
  return { pkg: spec };
}

const ALL = Object.keys(ALLOWED).flatMap((folder) => sourceFiles(folder).map((file) => ({ file, folder: folderOf(file)! })));

/** Why `file` may not import `spec`, or undefined when the edge is allowed. */
function edgeProblem(file: string, spec: string): string | undefined {
  const folder = folderOf(file)!;
  const allowed = ALLOWED[folder] ?? ALLOWED.test!;
  const t = target(file, spec);
  if (t.pkg !== undefined) return FORBIDDEN_PACKAGES[folder]?.test(t.pkg) ? `${file} imports ${spec} (forbidden in ${folder})` : undefined;
  const to = folderOf(t.path!);
  if (!to) return `${file} imports ${spec}, outside every layer`;
  if (to === folder || allowed.includes(to)) return undefined;
  if (allowed.includes('*') && to !== 'test' && (to !== 'test/support' || folder.startsWith('test'))) return undefined;
  return `${file} imports ${spec} (${folder} -> ${to} is not an allowed edge)`;
}

describe('layers', () => {
  test('every import follows the allowed edges', () => {
    const bad = ALL.flatMap(({ file }) =>
      importsOf(file)
        .map((spec) => edgeProblem(file, spec))
        .filter((p) => p !== undefined),
    );
    assert.deepEqual(bad, []);
  });

  test('export never reaches TensorFlow.js, and the runtime never reaches training code, even transitively', () => {
    const byFile = new Map(ALL.map((f) => [f.file, f]));
    const reach = (start: string[]): Set<string> => {
      const seen = new Set<string>();
      const stack = [...start];
      while (stack.length) {
        const file = stack.pop()!;
        if (seen.has(file)) continue;
        seen.add(file);
        for (const spec of importsOf(file)) {
          const t = target(file, spec);
          if (t.pkg !== undefined) {
            seen.add(`pkg:${t.pkg}`);
            continue;
          }
          const path = t.path!;
          const next = byFile.has(path)
            ? [path]
            : ALL.map((f) => f.file).filter((f) => f === join(path, 'index.ts') || (path.endsWith('/src') && f.startsWith(`${path}/`)));
          stack.push(...next);
        }
      }
      return seen;
    };
    const exportReach = [...reach(sourceFiles(`${CAPSNET}/export`))];
    assert.deepEqual(
      exportReach.filter((x) => x.startsWith('pkg:@tensorflow')),
      [],
    );
    const runtimeReach = [...reach(sourceFiles('packages/runtime/src'))];
    assert.deepEqual(
      runtimeReach.filter((x) => x.startsWith(CAPSNET) || x.startsWith('pkg:@tensorflow')),
      [],
    );
    assert.ok(runtimeReach.includes('pkg:onnxruntime-web') && runtimeReach.includes('pkg:onnxruntime-node'), 'the check sees the runtime imports');
  });

  test('the check catches forbidden edges', () => {
    assert.match(edgeProblem(`${CAPSNET}/export/exporter.ts`, '../model/capsnet.ts') ?? '', /export -> .*model is not an allowed edge/);
    assert.match(edgeProblem(`${CAPSNET}/model/capsnet.ts`, '../train/loop.ts') ?? '', /model -> .*train is not an allowed edge/);
    assert.match(edgeProblem(`${CAPSNET}/model/routing.ts`, '../files/checkpoint.ts') ?? '', /model -> .*files is not an allowed edge/);
    assert.equal(edgeProblem(`${CAPSNET}/train/family.ts`, '../model/capsnet.ts'), undefined);
    assert.equal(edgeProblem(`${CAPSNET}/train/backends/wasm-capsule-kernels.ts`, '../../model/fused.ts'), undefined);
    assert.match(edgeProblem(`${CAPSNET}/serve/server.ts`, '../cli/main.ts') ?? '', /not an allowed edge/);
    assert.match(edgeProblem('packages/core/src/config.ts', 'node:fs') ?? '', /forbidden in packages\/core/);
    assert.match(edgeProblem('packages/runtime/src/node.ts', '@tensorflow/tfjs-core') ?? '', /forbidden/);
    assert.match(edgeProblem(`${CAPSNET}/model/capsnet.ts`, '../../../../test/support/fixtures.ts') ?? '', /not an allowed edge/);
    assert.equal(edgeProblem(`${CAPSNET}/export/exporter.ts`, '@capsnet-onnx/core'), undefined);
    assert.ok(importsOf(`${CAPSNET}/model/capsnet.ts`).includes('@tensorflow/tfjs-core'), 'imports are read');
  });
});
