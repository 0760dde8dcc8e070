/**
 * Hygiene that keeps itself (issue 23 item 7): every repository path that a README, a doc page or a source comment
 * names exists; no source file under packages/* /src is over 450 lines; no line is over 160 characters (Biome's
 * formatter wraps code at 160, but not strings and comments).
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { describe, test } from 'node:test';
import { ROOT } from '../../support/fixtures.ts';

const MAX_SOURCE_LINES = 450;
const MAX_LINE = 160;

const tracked = execFileSync('git', ['ls-files', '-z'], { cwd: ROOT, encoding: 'utf8' })
  .split('\0')
  .filter((f) => f && existsSync(join(ROOT, f)));
const isCode = (f: string) => /\.(ts|mts|mjs|js|sh)$/.test(f) && !f.includes('/fixtures/');
const isDoc = (f: string) => f.endsWith('.md');

/** Folders a bare relative path in a comment may be relative to: the file's own, each package's src/, the root. */
function candidates(file: string, path: string): string[] {
  const packages = ['core', 'runtime', 'mnist', 'capsnet'].map((p) => join('packages', p, 'src'));
  const [first, ...rest] = path.split('/');
  // `core/image.ts`, `runtime/registry.ts`: a package by its short name.
  const short = join('packages', first!, 'src', ...rest);
  return [short, ...[dirname(file), '.', ...packages, 'packages/capsnet'].map((base) => join(base, path))];
}

/** Paths worth checking: a/b.ext or a/b/ with a known extension, not URLs, globs, templates or build output. */
const PATH = /(?<![\w@./:-])((?:\.{1,2}\/)?(?:[\w-]+\/)+[\w.-]+\.(?:ts|mts|mjs|js|json|md|sh|wasm|html|css|py))(?![\w/])/g;
/**
 * Not repository paths: installed or built files, what commands write (bench-results/, an experiment's --out, the GPU
 * bundle's own layout once unpacked) and placeholders (DIR/, OUT_DIR/, NAME).
 */
const SKIP =
  /(^|\/)(node_modules|dist|runs?|out|tmp|bench-results|gpu-results|experiments|gpu-bundle|data\/small|wasm-out|api|vendor)\/|(^|\/)[A-Z_]{3,}(\/|\.)/;

describe('repository hygiene', () => {
  test('every repository path named in a README, doc page or source comment exists', () => {
    const missing: string[] = [];
    for (const file of tracked.filter((f) => isCode(f) || isDoc(f))) {
      const text = readFileSync(join(ROOT, file), 'utf8');
      // In code, only comments name paths for readers; strings may name files a command is about to write.
      const prose = isDoc(file) ? text : (text.match(/\/\/[^\n]*|\/\*[\s\S]*?\*\/|^#[^\n]*/gm) ?? []).join('\n');
      for (const m of prose.matchAll(PATH)) {
        const path = m[1]!;
        if (SKIP.test(path) || /^(https?|file):/.test(path)) continue;
        if (!candidates(file, path).some((p) => existsSync(join(ROOT, p)))) missing.push(`${file}: ${path}`);
      }
    }
    assert.deepEqual(missing, [], `paths that do not exist (fix the reference or the name):\n${missing.join('\n')}`);
  });

  test(`no source file under packages/*/src is over ${MAX_SOURCE_LINES} lines`, () => {
    const long = tracked
      .filter((f) => /^packages\/[^/]+\/src\/.*\.(ts|mjs|js)$/.test(f) && !f.endsWith('/cards.ts'))
      .map((f) => ({ f, lines: readFileSync(join(ROOT, f), 'utf8').split('\n').length }))
      .filter(({ lines }) => lines > MAX_SOURCE_LINES)
      .map(({ f, lines }) => `${f}: ${lines} lines`);
    assert.deepEqual(long, [], 'split these by what they do');
  });

  test(`no line of code or JSON is over ${MAX_LINE} characters`, () => {
    const long: string[] = [];
    // Generated data is exempt: the lock file and the pretrained models' cards (scripts/pretrained.ts writes them).
    const generated = (f: string) => f === 'package-lock.json' || f.startsWith('packages/mnist/models/') || f.endsWith('/cards.ts');
    for (const file of tracked.filter((f) => (isCode(f) || f.endsWith('.json')) && !generated(f))) {
      readFileSync(join(ROOT, file), 'utf8')
        .split('\n')
        .forEach((line, i) => {
          if (line.length > MAX_LINE) long.push(`${file}:${i + 1} (${line.length})`);
        });
    }
    assert.deepEqual(long, [], 'wrap these (strings: concatenate; comments: break the line)');
  });
});
