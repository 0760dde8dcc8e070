/**
 * Issue 20, item 3: the server serves the model and decoder bytes it loaded (serve/files.ts), not whatever the
 * path holds later, and says when the file on disk differs; the page's files carry ETags so browsers revalidate
 * (304) instead of downloading them on every visit. The sweep: model.onnx deleted while serving made
 * GET /model.onnx a 500 with a stack in the log, and a replaced model went unnoticed.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createServer, type CapsNetServer } from '../../../packages/capsnet/src/serve/server.ts';
import { FakeClassifier } from '../../support/serve.ts';

describe('serving the files that were loaded', () => {
  let dir: string;
  let server: CapsNetServer;
  let base: string;
  const logs: string[] = [];
  const model = new TextEncoder().encode('the model bytes that were loaded');
  const decoder = new TextEncoder().encode('the decoder bytes that were loaded');
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'capsnet-files-'));
    writeFileSync(join(dir, 'model.onnx'), model);
    writeFileSync(join(dir, 'model.decoder.onnx'), decoder);
    writeFileSync(join(dir, 'capsnet.js'), 'export const page = 1;\n');
    server = await createServer({
      classifier: new FakeClassifier(),
      modelPath: join(dir, 'model.onnx'),
      decoderPath: join(dir, 'model.decoder.onnx'),
      webDir: dir,
      log: (l) => logs.push(l),
    });
    base = await server.listen(0, '127.0.0.1');
  });
  after(async () => {
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const get = async (path: string, headers: Record<string, string> = {}) => {
    const r = await fetch(`${base}${path}`, { headers });
    return { status: r.status, headers: r.headers, bytes: new Uint8Array(await r.arrayBuffer()) };
  };

  test('the model, decoder, page and script carry an ETag; If-None-Match gets 304 without a body', async () => {
    for (const path of ['/model.onnx', '/model.decoder.onnx', '/', '/web/capsnet.js']) {
      const first = await get(path);
      assert.equal(first.status, 200, path);
      const etag = first.headers.get('etag');
      assert.match(etag ?? '', /^"[0-9a-f]{32}"$/, path);
      assert.equal(first.headers.get('cache-control'), 'no-cache', path);
      const again = await get(path, { 'if-none-match': etag! });
      assert.equal(again.status, 304, path);
      assert.equal(again.bytes.length, 0, path);
      assert.equal((await get(path, { 'if-none-match': '"something-else"' })).status, 200, path);
    }
    assert.deepEqual((await get('/model.onnx')).bytes, model);
    assert.deepEqual((await get('/model.decoder.onnx')).bytes, decoder);
  });

  test("the page's content-hashed chunks are cached as immutable; other scripts are revalidated", async () => {
    writeFileSync(join(dir, 'page-ort.wasm.bundle.min-EGHLT47B.js'), 'export const chunk = 1;\n');
    writeFileSync(join(dir, 'page-notahash.js'), 'export const chunk = 2;\n');
    const chunk = await get('/web/page-ort.wasm.bundle.min-EGHLT47B.js');
    assert.equal(chunk.status, 200);
    assert.equal(chunk.headers.get('cache-control'), 'public, max-age=31536000, immutable');
    assert.equal((await get('/web/page-notahash.js')).headers.get('cache-control'), 'no-cache');
  });

  test('a script changed on disk gets a new ETag (the browser downloads it again)', async () => {
    const before = (await get('/web/capsnet.js')).headers.get('etag');
    writeFileSync(join(dir, 'capsnet.js'), 'export const page = 2;\n');
    utimesSync(join(dir, 'capsnet.js'), new Date(), new Date(Date.now() + 5000));
    const after = await get('/web/capsnet.js', { 'if-none-match': before! });
    assert.equal(after.status, 200);
    assert.notEqual(after.headers.get('etag'), before);
    assert.equal(new TextDecoder().decode(after.bytes), 'export const page = 2;\n');
  });

  test('model.onnx deleted, then replaced, while serving: the loaded bytes are served, the change is reported and logged once', async () => {
    rmSync(join(dir, 'model.onnx'));
    const gone = await get('/model.onnx');
    assert.equal(gone.status, 200);
    assert.deepEqual(gone.bytes, model);
    assert.equal(gone.headers.get('x-capsnet-file-on-disk'), 'missing');
    await get('/model.onnx');
    const deleted = logs.filter((l) => /model\.onnx was deleted since the server loaded it/.test(l));
    assert.equal(deleted.length, 1, logs.join('\n'));
    assert.match(deleted[0]!, /keep serving the loaded copy; restart capsnet serve to load the file on disk$/);
    assert.equal((await (await fetch(`${base}/v1/model`)).json()).files.onDisk.model, 'missing');

    writeFileSync(join(dir, 'model.onnx'), 'another model entirely');
    const replaced = await get('/model.onnx');
    assert.equal(replaced.status, 200);
    assert.deepEqual(replaced.bytes, model);
    assert.equal(replaced.headers.get('x-capsnet-file-on-disk'), 'changed');
    assert.equal(logs.filter((l) => /model\.onnx changed on disk since the server loaded it/.test(l)).length, 1);
    const info = (await (await fetch(`${base}/v1/model`)).json()).files;
    assert.deepEqual(info.onDisk, { model: 'changed', decoder: 'same' });

    // The same bytes written back (a copy, a touch): the file is the loaded one again.
    writeFileSync(join(dir, 'model.onnx'), model);
    const restored = await get('/model.onnx');
    assert.equal(restored.headers.get('x-capsnet-file-on-disk'), null);
    assert.ok(
      logs.every((l) => !/error|stack|ENOENT/i.test(l)),
      logs.join('\n'),
    );
  });
});
