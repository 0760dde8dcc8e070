/**
 * The page and the files it loads, as a Fastify plugin (register without a prefix):
 *
 *   GET /                    the page (serve/page/index.html), with its Content-Security-Policy
 *   GET /page/page.css       its stylesheet
 *   GET /web/FILE            the browser bundles (web/build.ts): page.js (serve/page/app.ts) and its chunks, capsnet.js, ...
 *                            (the page's chunks have content-hashed names: cached for a year, immutable)
 *   GET /model.onnx          the model and decoder bytes the server loaded (serve/files.ts), from memory
 *   GET /model.decoder.onnx
 *   GET /ort/FILE            onnxruntime-web's .wasm and .mjs, from capsnet-onnx's own onnxruntime-web
 *
 * Every file carries an ETag (a content hash) so browsers revalidate and get 304 instead of downloading it again.
 */
import { createReadStream, existsSync } from 'node:fs';
import { dirname, extname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { ownOnnxruntimeWeb } from '../web/paths.ts';
import { notFound } from './errors.ts';
import { EtagCache, LoadedFile, matchesEtag } from './files.ts';

export const PAGE_DIR = join(dirname(fileURLToPath(import.meta.url)), 'page');
/** The page's files served from PAGE_DIR; its script is the bundle /web/page.js (serve/page/app.ts). */
const PAGE_FILES = new Set(['index.html', 'page.css']);

const CONTENT_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.wasm': 'application/wasm',
  '.map': 'application/json; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.onnx': 'application/octet-stream',
};

/**
 * The page's Content-Security-Policy: only its own scripts, styles and workers; WebAssembly compilation for
 * onnxruntime-web ('wasm-unsafe-eval'); no inline script, no plugins, no framing.
 */
export const PAGE_CSP = [
  "default-src 'self'",
  "script-src 'self' 'wasm-unsafe-eval'",
  "worker-src 'self' blob:",
  "connect-src 'self' blob: data:",
  "img-src 'self' data: blob:",
  "style-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ');

export interface StaticOptions {
  /** The model and decoder the classifier was loaded from; null: not served (404 naming the fix). */
  modelFile: LoadedFile | null;
  decoderFile: LoadedFile | null;
  /** Folder of the browser bundles (web/paths.ts's WEB_DIST). */
  webDir: string;
}

function onnxruntimeWebDist(): string | undefined {
  try {
    // capsnet-onnx's own onnxruntime-web (an exact dependency): the version the page's bundle embeds, which may
    // differ from an app's copy of onnxruntime-web.
    return ownOnnxruntimeWeb().dir;
  } catch {
    return undefined;
  }
}

/** Load the model and decoder files once: `bytes` when given (what the classifier was loaded from), else the file. */
export async function loadServedFile(path: string | undefined, bytes: Uint8Array | undefined, route: string, log: (line: string) => void) {
  if (path === undefined) return null;
  return bytes ? new LoadedFile(path, bytes, route, log) : LoadedFile.read(path, route, log);
}

export async function staticFiles(app: FastifyInstance, options: StaticOptions): Promise<void> {
  const { modelFile, decoderFile, webDir } = options;
  const ortDir = onnxruntimeWebDist();
  const etags = new EtagCache();

  /** Send `body()` with an ETag, or 304 when the browser already holds it (If-None-Match). */
  const sendCached = (request: FastifyRequest, reply: FastifyReply, type: string, etag: string, cache: string, body: () => unknown, size: number) => {
    reply.type(type).header('Cache-Control', cache).header('ETag', etag);
    if (type.startsWith('text/html')) reply.header('Content-Security-Policy', PAGE_CSP);
    if (matchesEtag(request.headers['if-none-match'], etag)) return reply.code(304).send();
    reply.header('Content-Length', size);
    return reply.send(body());
  };
  const sendFile = async (request: FastifyRequest, reply: FastifyReply, path: string, cache: string) => {
    const { etag, size } = await etags.get(path);
    return sendCached(request, reply, CONTENT_TYPES[extname(path)] ?? 'application/octet-stream', etag, cache, () => createReadStream(path), size);
  };
  const sendLoaded = async (request: FastifyRequest, reply: FastifyReply, file: LoadedFile) => {
    const state = await file.diskState();
    if (state !== 'same') reply.header('X-Capsnet-File-On-Disk', state);
    const bytes = () => Buffer.from(file.bytes.buffer, file.bytes.byteOffset, file.bytes.byteLength);
    return sendCached(request, reply, CONTENT_TYPES['.onnx']!, file.etag, 'no-cache', bytes, file.bytes.byteLength);
  };
  const param = (request: FastifyRequest) => (request.params as { file: string }).file;

  app.get('/', async (request, reply) => sendFile(request, reply, join(PAGE_DIR, 'index.html'), 'no-cache'));
  app.get('/page/:file', async (request, reply) => {
    const file = param(request);
    if (!PAGE_FILES.has(file) || !existsSync(join(PAGE_DIR, file))) throw notFound(`/page/${file}`, 'see the page at /');
    return sendFile(request, reply, join(PAGE_DIR, file), 'no-cache');
  });
  app.get('/model.onnx', async (request, reply) => {
    if (!modelFile) throw notFound('the model file', 'start the server with a model path');
    return sendLoaded(request, reply, modelFile);
  });
  app.get('/model.decoder.onnx', async (request, reply) => {
    if (!decoderFile) throw notFound('the decoder file', 'export writes <model>.decoder.onnx beside the model');
    return sendLoaded(request, reply, decoderFile);
  });
  app.get('/ort/:file', async (request, reply) => {
    const file = param(request);
    if (!ortDir || !/^ort[\w.-]*\.(mjs|wasm|map)$/.test(file) || !existsSync(join(ortDir, file))) {
      throw notFound(`/ort/${file}`, 'install onnxruntime-web beside capsnet-onnx (`npm install onnxruntime-web`)');
    }
    return sendFile(request, reply, join(ortDir, file), 'public, max-age=3600');
  });
  app.get('/web/:file', async (request, reply) => {
    const file = param(request);
    if (!/^[\w.-]+$/.test(file) || file.startsWith('.') || !existsSync(join(webDir, file))) {
      throw notFound(`/web/${file}`, 'the browser bundles ship in the capsnet-onnx package (in its repository: `npm run build:web`)');
    }
    return sendFile(request, reply, join(webDir, file), HASHED_CHUNK.test(file) ? 'public, max-age=31536000, immutable' : 'no-cache');
  });
}

/** A chunk of the page's bundle (web/build.ts's PAGE_SPLIT): esbuild puts a hash of its content in the name. */
const HASHED_CHUNK = /^page-[\w.-]+-[A-Z0-9]{8}\.js(\.map)?$/;
