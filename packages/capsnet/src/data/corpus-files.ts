/**
 * `capsnet corpus write DIR`'s files on disk: what it may replace, and how it knows.
 *
 * The corpus is regenerated data, but DIR is a folder a user may have worked in: edited a digit, added their own
 * photos. So the write records what it wrote in DIR/corpus.json (count, seed, each file's SHA-256), and:
 *
 * - an empty or missing DIR is written;
 * - a DIR holding exactly a corpus this command wrote, unchanged (every file in corpus.json, with its hash, and
 *   nothing else), is replaced: its files go first, so a smaller --count leaves none of the larger one behind;
 * - anything else (an edited file, a file the corpus did not write, a corpus written before corpus.json) is refused
 *   unless `overwrite`, which removes the files named like corpus files (and corpus.json) and keeps the rest.
 *
 * Dot files are ignored throughout (classify skips them too); temp files of a killed write are swept first.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { OutputExistsError, asFileSystemError, sweepTempFiles, writeFilesAtomic } from '../files/atomic.ts';
import { BLANK_STYLES, DIGIT_STYLES, makeDigitCorpus } from './corpus.ts';

/** The record of a written corpus, beside its style folders. */
export const CORPUS_MANIFEST = 'corpus.json';

interface Manifest {
  producer: 'capsnet corpus write';
  count: number;
  seed: number;
  /** `<style>/<file>` -> SHA-256 (hex) of the bytes written. */
  files: Record<string, string>;
}

/** A name makeDigitCorpus writes: `<style>/<nnnn>-<digit|none>.<ext>`, with the style's own extension. */
const CORPUS_NAME = new RegExp(
  `^(?:(?:${DIGIT_STYLES.filter((s) => s !== 'photo').join('|')})/\\d{4,}-\\d\\.png|photo/\\d{4,}-\\d\\.jpg|` +
    `(?:${BLANK_STYLES.filter((s) => s !== 'blank-photo').join('|')})/\\d{4,}-none\\.png|blank-photo/\\d{4,}-none\\.jpg)$`,
);

export function isCorpusFileName(relative: string): boolean {
  return CORPUS_NAME.test(relative);
}

const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');

/** Files under `dir`, as `a/b.png` paths relative to it, dot files and dot folders skipped. */
function filesUnder(dir: string, prefix = ''): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(join(dir, prefix), { withFileTypes: true })) {
    if (entry.name.startsWith('.')) continue;
    const rel = prefix ? `${prefix}/${entry.name}` : entry.name;
    if (entry.isDirectory()) out.push(...filesUnder(dir, rel));
    else out.push(rel);
  }
  return out.sort();
}

function readManifest(dir: string): Manifest | undefined {
  try {
    const m = JSON.parse(readFileSync(join(dir, CORPUS_MANIFEST), 'utf8')) as Manifest;
    return m?.producer === 'capsnet corpus write' && m.files && typeof m.files === 'object' ? m : undefined;
  } catch {
    return undefined;
  }
}

/** Why `present` is not exactly the corpus the manifest records, or undefined when it is. */
function notThePreviousCorpus(dir: string, present: string[], manifest: Manifest | undefined): string | undefined {
  if (!manifest) return `no ${CORPUS_MANIFEST} says what corpus write put there`;
  const foreign = present.find((f) => f !== CORPUS_MANIFEST && !(f in manifest.files));
  if (foreign) return `${foreign} is not a file corpus write made`;
  for (const [file, hash] of Object.entries(manifest.files)) {
    const path = join(dir, file);
    if (!existsSync(path)) continue; // removed by the user: nothing of theirs to lose
    if (sha256(readFileSync(path)) !== hash) return `${file} was changed since corpus write made it`;
  }
  return undefined;
}

export interface CorpusWriteResult {
  /** Images written (what DIR now holds of the corpus). */
  written: number;
  /** Corpus files of an earlier write that were removed first. */
  removed: number;
  /** Files left in DIR that the corpus did not write (with `overwrite`, or none). */
  kept: string[];
}

/**
 * Write makeDigitCorpus(count, seed) into `dir` under the rules above, each file atomically,
 * corpus.json last (a write cut short leaves no record, so the next one asks for `overwrite`).
 * @throws OutputExistsError when `dir` holds anything but an unchanged corpus and `overwrite` is not set.
 */
export function writeCorpus(dir: string, options: { count: number; seed: number; overwrite?: boolean }): CorpusWriteResult {
  if (existsSync(dir) && !statSync(dir).isDirectory()) throw new Error(`${dir} is a file, not a folder: give a folder for the corpus`);
  let present: string[] = [];
  if (existsSync(dir)) {
    for (const sub of ['', ...DIGIT_STYLES, ...BLANK_STYLES]) sweepTempFiles(join(dir, sub));
    present = filesUnder(dir);
  }
  const manifest = existsSync(dir) ? readManifest(dir) : undefined;
  const why = present.length ? notThePreviousCorpus(dir, present, manifest) : undefined;
  if (why && !options.overwrite) {
    const start = `${dir} holds ${present.length} file(s) and is not a corpus left as corpus write made it (${why})`;
    throw new OutputExistsError(
      dir,
      `${start}: pass overwrite: true to replace its corpus files, or choose an empty folder`,
      `${start}: pass --overwrite to replace its corpus files (other files stay), or choose an empty folder`,
    );
  }
  // Checked before the images are rendered (seconds at --count 200), then the old corpus files go.
  // An unchanged corpus goes whole; with overwrite, whatever is named like a corpus file (edited ones too).
  const old = present.filter((f) => f === CORPUS_MANIFEST || (why ? isCorpusFileName(f) : f in (manifest?.files ?? {})));
  for (const f of old) {
    try {
      rmSync(join(dir, f), { force: true });
    } catch (e) {
      throw asFileSystemError(e, join(dir, f));
    }
  }
  const kept = present.filter((f) => !old.includes(f));
  const images = makeDigitCorpus(options.count, options.seed);
  try {
    for (const style of [...DIGIT_STYLES, ...BLANK_STYLES]) mkdirSync(join(dir, style), { recursive: true });
  } catch (e) {
    throw asFileSystemError(e, dir);
  }
  const files = images.map((image) => ({ path: join(dir, image.file), bytes: image.bytes }));
  const record: Manifest = {
    producer: 'capsnet corpus write',
    count: options.count,
    seed: options.seed,
    files: Object.fromEntries(images.map((image) => [image.file, sha256(image.bytes)])),
  };
  writeFilesAtomic([...files, { path: join(dir, CORPUS_MANIFEST), bytes: `${JSON.stringify(record, null, 1)}\n` }]);
  return { written: images.length, removed: old.filter((f) => f !== CORPUS_MANIFEST).length, kept };
}
