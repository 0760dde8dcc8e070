/**
 * Files the server sends: the model and decoder it loaded, served from memory, and the page's files from disk,
 * each with an ETag (a content hash) so that a browser revalidates with If-None-Match and gets 304 instead of
 * downloading them again.
 *
 * The model and decoder are the bytes the classifier was loaded from, not whatever the path holds now: the page
 * then runs the same model as the API, and a file deleted or replaced while serving neither breaks /model.onnx
 * nor slips a different model to the page. The file on disk is compared with the loaded bytes (its size, mtime
 * and inode first; its SHA-256 when those change) and a difference is logged once and reported by /v1/model.
 */
import { createHash } from 'node:crypto';
import { type Stats, statSync } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { basename } from 'node:path';

/** A strong ETag for bytes: the first 128 bits of their SHA-256, quoted as RFC 9110 asks. */
export function etagOf(bytes: Uint8Array): string {
  return `"${createHash('sha256').update(bytes).digest('hex').slice(0, 32)}"`;
}

/** Whether an If-None-Match header matches `etag` (a list, `*`, and weak validators compared weakly). */
export function matchesEtag(header: string | string[] | undefined, etag: string): boolean {
  if (header === undefined) return false;
  const list = (Array.isArray(header) ? header.join(',') : header).split(',').map((t) => t.trim().replace(/^W\//, ''));
  return list.includes('*') || list.includes(etag);
}

export type DiskState = 'same' | 'changed' | 'missing';

const signature = (s: Stats) => `${s.size}:${s.mtimeMs}:${s.ino}`;

/** One file loaded at start and served from memory, with a watch on the file it came from. */
export class LoadedFile {
  readonly etag: string;
  readonly name: string;
  #loadedSignature: string | null;
  #checked: { signature: string | null; state: DiskState };
  #reported: DiskState = 'same';

  constructor(
    readonly path: string,
    readonly bytes: Uint8Array,
    /** The URL path it is served at, for the log line. */
    readonly route: string,
    private readonly log: (line: string) => void,
  ) {
    this.etag = etagOf(bytes);
    this.name = basename(path);
    let loaded: Stats | null = null;
    try {
      loaded = statSync(path);
    } catch {
      loaded = null;
    }
    this.#loadedSignature = loaded ? signature(loaded) : null;
    this.#checked = { signature: this.#loadedSignature, state: loaded ? 'same' : 'missing' };
  }

  /** Read `path` once; null when it does not exist. */
  static async read(path: string, route: string, log: (line: string) => void): Promise<LoadedFile | null> {
    try {
      return new LoadedFile(path, await readFile(path), route, log);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw e;
    }
  }

  /**
   * How the file on disk compares with the loaded bytes now; a change is logged once (and again only after
   * it changes back and changes again).
   */
  async diskState(): Promise<DiskState> {
    let now: Stats | null;
    try {
      now = await stat(this.path);
    } catch {
      now = null;
    }
    const sig = now ? signature(now) : null;
    if (sig !== this.#checked.signature) {
      let state: DiskState;
      if (!now) state = 'missing';
      else if (sig === this.#loadedSignature) state = 'same';
      else {
        // Touched or copied over: compare the content itself.
        try {
          state = etagOf(await readFile(this.path)) === this.etag ? 'same' : 'changed';
        } catch {
          state = 'missing';
        }
      }
      this.#checked = { signature: sig, state };
    }
    const state = this.#checked.state;
    if (state !== this.#reported) {
      this.#reported = state;
      if (state !== 'same') {
        this.log(
          `${this.name} ${state === 'missing' ? 'was deleted' : 'changed on disk'} since the server loaded it: the API and ${this.route} ` +
            'keep serving the loaded copy; restart capsnet serve to load the file on disk',
        );
      }
    }
    return state;
  }
}

/** ETags of files on disk, recomputed when a file's size, mtime or inode changes. */
export class EtagCache {
  readonly #cache = new Map<string, { signature: string; etag: string }>();

  async get(path: string): Promise<{ etag: string; size: number }> {
    const s = await stat(path);
    const sig = signature(s);
    let entry = this.#cache.get(path);
    if (!entry || entry.signature !== sig) {
      entry = { signature: sig, etag: etagOf(await readFile(path)) };
      this.#cache.set(path, entry);
    }
    return { etag: entry.etag, size: s.size };
  }
}
