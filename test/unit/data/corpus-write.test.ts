/**
 * `capsnet corpus write DIR` on a folder that is not empty: an unchanged corpus it wrote is replaced whole (a smaller
 * --count leaves no file of the larger one, and the count printed is what DIR holds); an edited file or a file it
 * did not write is refused without --overwrite, and with it only the corpus-named files go.
 */
import assert from 'node:assert/strict';
import { appendFileSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { execa } from 'execa';
import { CORPUS_MANIFEST, isCorpusFileName, writeCorpus } from '../../../packages/capsnet/src/data/corpus-files.ts';
import { CLI, ROOT } from '../../support/fixtures.ts';

const cli = (...args: string[]) => execa('node', [CLI, ...args], { cwd: ROOT, reject: false });

/** Every file under `dir`, as style/name paths, dot files included. */
function files(dir: string): string[] {
  return (readdirSync(dir, { recursive: true }) as string[]).filter((f) => statSync(join(dir, f)).isFile()).sort();
}

describe('corpus write on a folder that is not empty', { timeout: 120_000 }, () => {
  let base: string;
  before(() => {
    base = mkdtempSync(join(tmpdir(), 'capsnet-corpus-'));
  });
  after(() => rmSync(base, { recursive: true, force: true }));

  test('an unchanged corpus is replaced whole: --count 5 then --count 3 leaves 18 images, and says 18', async () => {
    const dir = join(base, 'digits');
    const five = await cli('corpus', 'write', dir, '--count', '5');
    assert.equal(five.exitCode, 0, five.stderr);
    assert.equal(five.stdout.trim(), `${dir}: 28 images in 8 styles`);
    const three = await cli('corpus', 'write', dir, '--count', '3');
    assert.equal(three.exitCode, 0, three.stderr);
    assert.equal(three.stdout.trim(), `${dir}: 18 images in 8 styles (the 28 files of the previous corpus removed first)`);
    const images = files(dir).filter((f) => f !== CORPUS_MANIFEST);
    assert.equal(images.length, 18);
    assert.ok(images.every(isCorpusFileName), images.join(' '));
    assert.deepEqual(Object.keys(JSON.parse(readFileSync(join(dir, CORPUS_MANIFEST), 'utf8')).files).sort(), images);
  });

  test("a user's edit or own file is refused without --overwrite, untouched; with it only corpus files go", async () => {
    const dir = join(base, 'edited');
    writeCorpus(dir, { count: 2, seed: 1 });
    const edited = files(dir).find((f) => f.startsWith('paper/'))!;
    appendFileSync(join(dir, edited), 'my edit');
    const before = readFileSync(join(dir, edited));
    const refused = await cli('corpus', 'write', dir, '--count', '2');
    assert.equal(refused.exitCode, 1);
    assert.equal(
      refused.stderr.trim(),
      `capsnet: ${dir} holds 14 file(s) and is not a corpus left as corpus write made it (${edited} was changed since corpus write made it): ` +
        'pass --overwrite to replace its corpus files (other files stay), or choose an empty folder',
    );
    assert.ok(readFileSync(join(dir, edited)).equals(before), 'the edited file was not rewritten');
    // A file of the user's, and a folder of images written before corpus.json existed.
    writeFileSync(join(dir, 'notes.txt'), 'mine');
    const legacy = join(base, 'legacy');
    writeCorpus(legacy, { count: 1, seed: 1 });
    rmSync(join(legacy, CORPUS_MANIFEST));
    assert.throws(() => writeCorpus(legacy, { count: 1, seed: 1 }), { name: 'OutputExistsError', message: /no corpus\.json says what corpus write put there/ });

    const asked = await cli('corpus', 'write', dir, '--count', '1', '--overwrite');
    assert.equal(asked.exitCode, 0, asked.stderr);
    assert.equal(asked.stdout.trim(), `${dir}: 8 images in 8 styles (the 13 files of the previous corpus removed first); kept 1 other file(s): notes.txt`);
    assert.equal(readFileSync(join(dir, 'notes.txt'), 'utf8'), 'mine');
    assert.equal(files(dir).filter(isCorpusFileName).length, 8);
  });

  test('a file in the place of DIR is named', async () => {
    const file = join(base, 'file');
    writeFileSync(file, 'x');
    const r = await cli('corpus', 'write', file, '--count', '1');
    assert.equal(r.exitCode, 1);
    assert.equal(r.stderr.trim(), `capsnet: ${file} is a file, not a folder: give a folder for the corpus`);
  });
});
