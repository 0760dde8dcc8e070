/**
 * The page builds no HTML from data: a model whose class labels and data set name are markup is served, and in
 * headless Chromium (Debian's /usr/bin/chromium) the markup must show as text, never become elements or run.
 * The page also has to load the model under the server's Content-Security-Policy.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { BrowserContext, Page } from 'playwright-core';
import { startServeProcess } from '../support/serve.ts';
import { tinyModel } from '../support/tiny-model.ts';

const CHROMIUM = '/usr/bin/chromium';
const HOSTILE = '<img src=x onerror="window.__pwned=1">';

describe('the page with hostile metadata', { skip: existsSync(CHROMIUM) ? false : `${CHROMIUM} is not installed (apt-get install chromium)` }, () => {
  let server: Awaited<ReturnType<typeof startServeProcess>>;
  let context: BrowserContext;
  let page: Page;
  let dir: string;
  const consoleLines: string[] = [];

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'capsnet-hostile-'));
    const labels = [`${HOSTILE}0`, '<b>1</b>', '<script>window.__pwned=2</script>', '3'];
    const tiny = tinyModel({ 'capsnet.class_labels': JSON.stringify(labels), 'capsnet.dataset': `idx:/nowhere/${HOSTILE}` });
    writeFileSync(join(dir, 'model.onnx'), tiny.model);
    writeFileSync(join(dir, 'model.decoder.onnx'), tiny.decoder);
    const { buildWeb } = await import('../../packages/capsnet/src/web/build.ts');
    await buildWeb();
    server = await startServeProcess(join(dir, 'model.onnx'), ['--device', 'cpu']);
    const { chromium } = await import('playwright-core');
    context = await chromium.launchPersistentContext(join(dir, 'profile'), {
      executablePath: CHROMIUM,
      headless: true,
      args: ['--no-sandbox', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    page = context.pages()[0] ?? (await context.newPage());
    page.on('console', (m) => consoleLines.push(`${m.type()}: ${m.text()}`));
    page.on('pageerror', (e) => consoleLines.push(`pageerror: ${e.message}`));
    await page.goto(`${server.url}/?device=wasm`);
    await page.waitForFunction(() => (window as any).capsnet?.model || document.querySelector('#error:not([hidden])'), null, { timeout: 60_000 });
  });

  after(async () => {
    await context?.close();
    await server?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('labels and the data set name render as text; nothing runs; the model loads under the CSP', async () => {
    const error = await page.locator('#error').textContent();
    assert.ok(await page.evaluate(() => Boolean((window as any).capsnet.model)), `the page did not load the model: ${error}\n${consoleLines.join('\n')}`);
    // The samples strip fails to load the data set, and its note names it: that note used to go in via outerHTML.
    await page.waitForFunction(() => !document.querySelector('#samples') || document.querySelectorAll('#samples button').length > 0, null, { timeout: 30_000 });
    const seen = await page.evaluate(() => ({
      pwned: (window as any).__pwned,
      images: document.querySelectorAll('img').length,
      bold: document.querySelectorAll('main b, header b').length,
      scripts: Array.from(document.querySelectorAll('script')).filter((s) => !s.src).length,
      names: Array.from(document.querySelectorAll('#bars .name'), (n) => n.textContent),
      // biome-ignore lint/performance/useDomNodeTextContent: the rendered text, as a user reads it, is what is checked
      text: document.body.innerText,
    }));
    assert.equal(seen.pwned, undefined);
    assert.equal(seen.images, 0);
    assert.equal(seen.bold, 0);
    assert.equal(seen.scripts, 0);
    assert.equal(seen.names[0], `${HOSTILE}0`);
    assert.equal(seen.names[1], '<b>1</b>');
    assert.ok(seen.text.includes(HOSTILE), 'the hostile data set name shows as text');
  });
});
