/**
 * Request bodies: JSON (refusing prototype-poisoning keys with the reason said), a raw PNG or JPEG, or multipart
 * uploads (@fastify/multipart); anything else is a 415. `Content-Encoding: gzip`, `deflate` or `br` bodies are
 * inflated first, and the body limit applies to the inflated bytes (multipart included).
 */
import { type Readable, pipeline } from 'node:stream';
import { createBrotliDecompress, createGunzip, createInflate } from 'node:zlib';
import multipart from '@fastify/multipart';
import type { FastifyInstance } from 'fastify';
import { ServeError, oneLine } from './errors.ts';

/** Inflate a gzip, deflate or br body; Fastify's body limit then applies to the inflated bytes. */
function decompressBody(encoding: string, payload: Readable): Readable {
  const inflate = encoding === 'gzip' || encoding === 'x-gzip' ? createGunzip() : encoding === 'deflate' ? createInflate() : createBrotliDecompress();
  const counted = inflate as unknown as Readable & { receivedEncodedLength: number };
  counted.receivedEncodedLength = 0;
  payload.on('data', (chunk: Buffer) => (counted.receivedEncodedLength += chunk.length));
  pipeline(payload, inflate, () => {});
  return counted;
}

/** The first `"__proto__"` or `"constructor.prototype"` key anywhere in a parsed JSON value; undefined when none. */
export function prototypeKey(value: unknown): string | undefined {
  const pending: unknown[] = [value];
  while (pending.length) {
    const item = pending.pop();
    if (typeof item !== 'object' || item === null) continue;
    if (Array.isArray(item)) {
      for (const v of item) if (typeof v === 'object' && v !== null) pending.push(v);
      continue;
    }
    if (Object.hasOwn(item, '__proto__')) return '"__proto__"';
    const ctor = (item as Record<string, unknown>).constructor;
    if (Object.hasOwn(item, 'constructor') && typeof ctor === 'object' && ctor !== null && Object.hasOwn(ctor, 'prototype')) {
      return '"constructor.prototype"';
    }
    for (const v of Object.values(item)) if (typeof v === 'object' && v !== null) pending.push(v);
  }
  return undefined;
}

/** Register the body parsers and the decompression hook on `app` (its root: they apply to every route). */
export async function bodyParsing(app: FastifyInstance, limits: { bodyLimit: number; maxBatch: number }): Promise<void> {
  const { bodyLimit, maxBatch } = limits;
  app.removeContentTypeParser('text/plain');
  // Fastify's own JSON parser refuses a __proto__ or constructor.prototype key (prototype poisoning) but says only
  // "not valid JSON": the same rule, with the reason said.
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string', bodyLimit }, (_request, body, done) => {
    const text = String(body);
    const refuse = (code: string, message: string) => done(Object.assign(new Error(message), { statusCode: 400, code }), undefined);
    if (text.trim() === '') return refuse('FST_ERR_CTP_EMPTY_JSON_BODY', "Body cannot be empty when content-type is set to 'application/json'");
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (e) {
      return refuse('FST_ERR_CTP_INVALID_JSON_BODY', `the body is not valid JSON (${oneLine((e as Error).message)})`);
    }
    const key = prototypeKey(value);
    if (key) return refuse('PROTOTYPE_KEY', `the JSON body has a ${key} key, which the server refuses (it could change the prototype of objects): remove it`);
    done(null, value);
  });
  app.addContentTypeParser(['image/png', 'image/jpeg', 'application/octet-stream'], { parseAs: 'buffer', bodyLimit }, (_request, body, done) =>
    done(null, body),
  );
  app.addHook('preParsing', async (request, _reply, payload) => {
    const encoding = String(request.headers['content-encoding'] ?? 'identity')
      .trim()
      .toLowerCase();
    if (encoding === 'identity' || encoding === '') return payload;
    if (!['gzip', 'x-gzip', 'deflate', 'br'].includes(encoding)) {
      throw new ServeError(
        415,
        'UNSUPPORTED_ENCODING',
        `Content-Encoding ${JSON.stringify(encoding.slice(0, 40))} is not supported: send gzip, deflate, br or an uncompressed body`,
      );
    }
    const inflated = decompressBody(encoding, payload);
    // (request.isMultipart() is not known yet: the content-type parsers run after this hook.)
    if (/^multipart\//i.test(String(request.headers['content-type'] ?? '').trim())) {
      // @fastify/multipart reads the request object itself (request.raw), not the stream this hook returns: put the
      // inflated body in the request's place, carrying the request's fields that it and Fastify read. The upload's
      // size limit is counted on the inflated files (api.ts, readImages).
      const incoming = request.raw;
      request.raw = Object.assign(inflated, {
        headers: incoming.headers,
        url: incoming.url,
        method: incoming.method,
        socket: incoming.socket,
        httpVersion: incoming.httpVersion,
      }) as unknown as typeof incoming;
    }
    return inflated;
  });
  await app.register(multipart, { limits: { fileSize: bodyLimit, files: maxBatch, fields: 10, parts: maxBatch + 10 } });
}
