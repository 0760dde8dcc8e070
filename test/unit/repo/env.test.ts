/**
 * Environment variables (issue 23 item 6): one file per package or folder reads its `CAPSNET_*` variables, with
 * defaults, and docs/environment.md lists every variable the code names, with the same defaults.
 */
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { VARIABLES as BENCH } from '../../../bench/env.ts';
import { VARIABLES as TOOLCHAIN } from '../../../packages/capsnet/src/env/env.ts';
import { ROOT } from '../../support/fixtures.ts';
import { VARIABLES as TESTS } from '../../support/env.ts';

const ENV_FILES = ['packages/capsnet/src/env/env.ts', 'bench/env.ts', 'test/support/env.ts'];
const PAGE = 'docs/environment.md';

/** docs/environment.md's rows: variable -> its default cell. */
function documented(): Map<string, string> {
  const rows = new Map<string, string>();
  for (const line of readFileSync(join(ROOT, PAGE), 'utf8').split('\n')) {
    const m = /^\|\s*`(CAPSNET_[A-Z0-9_]+)`\s*\|\s*([^|]*?)\s*\|/.exec(line);
    if (m) rows.set(m[1]!, m[2]!);
  }
  return rows;
}

/** Project files that may name a variable: sources, bin, benches, scripts, tests (not this file, not dist/). */
function codeFiles(): string[] {
  const out: string[] = [];
  for (const dir of ['packages', 'bench', 'scripts', 'test']) {
    for (const f of readdirSync(join(ROOT, dir), { recursive: true, encoding: 'utf8' })) {
      const path = `${dir}/${f}`;
      if (/(^|\/)(node_modules|dist|fixtures)\//.test(path) || path === 'test/unit/repo/env.test.ts') continue;
      if (/\.(ts|mts|mjs|js|sh)$/.test(path)) out.push(path);
    }
  }
  return out;
}

describe('CAPSNET_* environment variables', () => {
  test('docs/environment.md lists each variable of the env files with its default', () => {
    const rows = documented();
    for (const [name, v] of Object.entries({ ...TOOLCHAIN, ...BENCH, ...TESTS }) as [string, { default: string | undefined; meaning: string }][]) {
      const cell = rows.get(name);
      assert.ok(cell !== undefined, `${name} is not in ${PAGE}`);
      if (v.default === undefined) assert.match(cell, /^\(/, `${name}: no default in the code, '${cell}' in ${PAGE}`);
      else assert.equal(cell, `\`${v.default}\``, `${name}: default ${v.default} in the code, ${cell} in ${PAGE}`);
      assert.ok(v.meaning.length > 20, `${name}: say what it does`);
    }
  });

  test('every variable the code names is documented, and no variable is documented that the code does not name', () => {
    const named = new Map<string, string>();
    for (const file of codeFiles()) {
      for (const m of readFileSync(join(ROOT, file), 'utf8').matchAll(/\bCAPSNET_[A-Z0-9_]*[A-Z0-9]\b/g)) if (!named.has(m[0])) named.set(m[0], file);
    }
    const rows = documented();
    assert.deepEqual(
      [...named].filter(([name]) => !rows.has(name)).map(([name, file]) => `${name} (${file})`),
      [],
      `named in the code, missing from ${PAGE}`,
    );
    assert.deepEqual(
      [...rows.keys()].filter((name) => !named.has(name)),
      [],
      `in ${PAGE}, named nowhere in the code`,
    );
  });

  test('only the env files read a variable through process.env in library, bench and support code', () => {
    const readers = codeFiles()
      .filter((f) => /\.(ts|mts|mjs|js)$/.test(f) && !f.endsWith('.test.ts') && !ENV_FILES.includes(f))
      .filter((f) => /process\.env(\.|\[\s*['"`])CAPSNET_/.test(readFileSync(join(ROOT, f), 'utf8')));
    // bin/capsnet.js passes CAPSNET_ARGV_FROM_STDIN to its own child before any TypeScript loads (see env.ts).
    assert.deepEqual(readers, []);
  });
});
