/**
 * The API reference (issue 24 item 3): `npm run docs:api` runs TypeDoc (typedoc.json) over the packages' public
 * entries (the sources their .d.ts files are emitted from, so no build is needed) into docs/api/, and fails on an
 * export without documentation (`validation.notDocumented` with `treatWarningsAsErrors`).
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { execa } from 'execa';
import { ROOT } from '../support/fixtures.ts';
import { appEnv } from '../support/packages.ts';

const out = mkdtempSync(join(tmpdir(), 'capsnet-api-docs-'));
after(() => rmSync(out, { recursive: true, force: true }));
const env = appEnv({ NO_COLOR: '1', FORCE_COLOR: '0' });

describe('npm run docs:api', () => {
  test('documents every public entry of the three packages, with no warning', async () => {
    const r = await execa('npm', ['run', 'docs:api', '--silent', '--', '--out', out], { cwd: ROOT, env, extendEnv: false, reject: false, all: true });
    assert.equal(r.exitCode, 0, r.all);
    assert.doesNotMatch(r.all ?? '', /\[warning\]|\[error\]/);
    const modules = readdirSync(join(out, 'modules')).sort();
    for (const entry of ['runtime_src_node', 'runtime_src_web', 'runtime_src_wasm-assets', 'core_src', 'capsnet_src_api']) {
      assert.ok(modules.includes(`${entry}.html`), `no page for ${entry}: ${modules.join(', ')}`);
    }
    // The runtime's entry object and its contract, with their doc comments rendered.
    const capsnet = join(out, 'variables', 'runtime_src_node.CapsNet.html');
    assert.ok(existsSync(capsnet), `no page for the Node entry's CapsNet: ${readdirSync(join(out, 'variables')).join(', ')}`);
    assert.match(readFileSync(capsnet, 'utf8'), /load/);
    assert.ok(existsSync(join(out, 'interfaces', 'runtime_src_node.Classifier.html')), 'no page for the Classifier contract');
  });

  test('fails on an export without documentation, naming it', async () => {
    const fixture = join(ROOT, 'test', 'fixtures', 'typedoc-undocumented');
    const failed = join(out, 'undocumented');
    const r = await execa(
      'npm',
      ['run', 'docs:api', '--silent', '--', '--entryPoints', join(fixture, 'index.ts'), '--tsconfig', join(fixture, 'tsconfig.json'), '--out', failed],
      { cwd: ROOT, env, extendEnv: false, reject: false, all: true },
    );
    assert.notEqual(r.exitCode, 0, `an undocumented export passed:\n${r.all}`);
    assert.match(r.all ?? '', /undocumentedTimesTwo .*does not have any documentation/);
    assert.doesNotMatch(r.all ?? '', /documentedAddOne/);
    assert.equal(existsSync(join(failed, 'index.html')), false, 'a failed run wrote the reference anyway');
  });
});
