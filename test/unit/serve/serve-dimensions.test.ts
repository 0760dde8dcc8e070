/**
 * What each capsule dimension does, served for the page's sliders: `capsnet serve --pretrained` serves the model's
 * dimensions.json in GET /v1/model, `--dimensions FILE` a user's own (from `capsnet experiment perturb`), and a
 * file that is missing, not JSON or measured on another model's capsules stops the server with a one-line error.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { pretrained } from '@capsnet-onnx/mnist';
import { checkDimensionFindings, type DimensionFindings } from '@capsnet-onnx/core';
import { execa } from 'execa';
import { CLI, ROOT } from '../../support/fixtures.ts';
import { getJson, startServeProcess } from '../../support/serve.ts';

const shipped = JSON.parse(readFileSync(pretrained('mnist-small').dimensions, 'utf8')) as DimensionFindings;
const dir = mkdtempSync(join(tmpdir(), 'capsnet-dimensions-'));
after(() => rmSync(dir, { recursive: true, force: true }));

describe('capsnet serve: the dimensions of the capsules', () => {
  test('the pretrained model ships a dimensions file for its 10 x 16 capsules, every class measured', () => {
    const findings = checkDimensionFindings(shipped, 'mnist-small dimensions.json', { digitDim: 16, numClasses: 10 });
    assert.deepEqual(
      findings.perClass.map((c) => c.class),
      [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
    );
    for (const c of findings.perClass) assert.ok(c.digits >= 5, `class ${c.class}: ${c.digits} digits measured`);
  });

  test('--pretrained serves its dimensions in GET /v1/model; --dimensions FILE serves a user file instead', async () => {
    const server = await startServeProcess('--pretrained=mnist-small');
    try {
      const { status, json } = await getJson(server.url, '/v1/model');
      assert.equal(status, 200);
      assert.deepEqual(json.dimensions, shipped);
    } finally {
      await server.stop();
    }
    const own = structuredClone(shipped);
    own.perClass[3]!.dimensions[0]!.label = 'a label from this test';
    const file = join(dir, 'own.json');
    writeFileSync(file, JSON.stringify(own));
    const mine = await startServeProcess('--pretrained=mnist-small', ['--dimensions', file]);
    try {
      const { json } = await getJson(mine.url, '/v1/model');
      assert.equal(json.dimensions.perClass[3].dimensions[0].label, 'a label from this test');
      assert.equal(json.dimensions.overall.length, 16);
    } finally {
      await mine.stop();
    }
  });

  test('a missing, broken or mismatched file stops serve with a one-line error naming the fix', async () => {
    const broken = join(dir, 'broken.json');
    writeFileSync(broken, '{"format": ');
    const other = join(dir, 'other.json');
    writeFileSync(other, JSON.stringify({ ...shipped, digitDim: 8, overall: shipped.overall.slice(0, 8), perClass: [] }));
    const cases: [string, RegExp][] = [
      [join(dir, 'none.json'), /^capsnet: --dimensions \S+none\.json: no such file: pass the dimensions\.json that `capsnet experiment perturb` wrote$/],
      [broken, /^capsnet: --dimensions \S+broken\.json: not JSON \(.*\): pass the dimensions\.json that `capsnet experiment perturb` wrote$/],
      [other, /^capsnet: --dimensions \S+other\.json: measured on capsules of 10 x 8, the model has 10 x 16: write it with `capsnet experiment perturb/],
    ];
    for (const [file, expected] of cases) {
      const run = await execa(process.execPath, [CLI, 'serve', '--pretrained', 'mnist-small', '--dimensions', file, '--port', '0'], {
        cwd: ROOT,
        reject: false,
      });
      assert.notEqual(run.exitCode, 0);
      assert.match(run.stderr.trim(), expected);
    }
  });
});
