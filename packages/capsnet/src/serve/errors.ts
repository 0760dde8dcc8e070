/**
 * The API's errors: a ServeError is a client error the server answers with `{ error: { code, message } }` and keeps
 * serving; `errorHandler` maps every other failure (Fastify's own client errors, zlib's and busboy's, the batcher's
 * and the runtime's) to the same shape, one line naming the fix, with no server path in it. Only a failure of the
 * model itself is a 500 (`INTERNAL`).
 */
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { InputError } from '@capsnet-onnx/core';
import { BatchTooLargeError, QueueFullError } from './batcher.ts';

/** A client error: the server answers `statusCode` with `{ error: { code, message } }` and keeps serving. */
export class ServeError extends Error {
  override name = 'ServeError';
  constructor(
    readonly statusCode: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export const badRequest = (code: string, message: string) => new ServeError(400, code, message);

/** 404 for a file or route that is not there, naming what is missing and the fix. */
export const notFound = (what: string, fix: string) => new ServeError(404, 'NOT_FOUND', `${what} is not available: ${fix}`);

/** The body of every error answer of the /v1 API (and of the page's files). */
export interface ErrorBody {
  error: { code: string; message: string };
}

/** The first line of a message, trimmed. */
export const oneLine = (text: string) => text.split('\n')[0]!.trim();

/**
 * Absolute file system paths in a message, reduced to their last part: no response names a server path. The
 * kernel's own (/proc, /sys, /dev: "/proc/driver/nvidia/version is missing") say nothing about the server's files
 * and stay whole, since the sentence needs them.
 */
export function withoutPaths(text: string): string {
  return text.replace(/(?<![\w./-])(?:[A-Za-z]:)?[/\\](?!(?:proc|sys|dev)\/)(?:[^\s/\\'"`:,;()]+[/\\])+([^\s/\\'"`:,;()]+)/g, '$1');
}

/** Fastify's own client errors, renamed for the API's error codes. */
const FASTIFY_CODES: Record<string, string> = {
  FST_ERR_CTP_BODY_TOO_LARGE: 'BODY_TOO_LARGE',
  FST_REQ_FILE_TOO_LARGE: 'BODY_TOO_LARGE',
  FST_PARTS_LIMIT: 'TOO_MANY_PARTS',
  FST_FILES_LIMIT: 'TOO_MANY_IMAGES',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'UNSUPPORTED_MEDIA_TYPE',
  FST_ERR_CTP_INVALID_JSON_BODY: 'BAD_JSON',
  PROTOTYPE_KEY: 'BAD_JSON',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'BAD_JSON',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'BAD_CONTENT_LENGTH',
  FST_INVALID_MULTIPART_CONTENT_TYPE: 'BAD_MULTIPART',
  Z_DATA_ERROR: 'BAD_ENCODING',
  Z_BUF_ERROR: 'BAD_ENCODING',
  ERR__ERROR_FORMAT_PADDING_1: 'BAD_ENCODING',
};

/**
 * Third-party client errors (zlib's, busboy's through @fastify/multipart) as one line naming the field and the
 * fix, their own text in parentheses; null for the others.
 */
export function clientErrorMessage(error: FastifyError, contentEncoding: string | string[] | undefined, maxBatch: number): string | null {
  const code = error.code ?? '';
  const own = oneLine(error.message);
  if (code.startsWith('Z_') || code === 'ERR__ERROR_FORMAT_PADDING_1' || code.startsWith('ERR_BROTLI')) {
    const encoding = String(contentEncoding ?? 'the Content-Encoding').slice(0, 20);
    return `the body is not valid ${encoding} data (${own}): send the body compressed as its Content-Encoding header says, or leave the header out`;
  }
  if (code === 'FST_FILES_LIMIT') return `more than ${maxBatch} files in one upload (--max-batch): split the request`;
  if (code === 'FST_PARTS_LIMIT' || code === 'FST_FIELDS_LIMIT') {
    return `the multipart body has too many parts (${own}): send at most ${maxBatch} files and 10 other fields`;
  }
  if (code === 'FST_INVALID_MULTIPART_CONTENT_TYPE')
    return 'the body is not multipart/form-data: send files as multipart/form-data, or one PNG or JPEG as the body';
  return null;
}

type AnyError = FastifyError | ServeError | BatchTooLargeError | QueueFullError;

/** The server's error handler: every error as `{ error: { code, message } }`; `log` gets the 500s' stacks. */
export function errorHandler(limits: { bodyLimit: number; maxBatch: number }, log: (line: string) => void) {
  return (error: AnyError, request: FastifyRequest, reply: FastifyReply) => {
    const send = (status: number, code: string, message: string) => reply.code(status).send({ error: { code, message } } satisfies ErrorBody);
    if (error instanceof ServeError) return send(error.statusCode, error.code, error.message);
    if (error instanceof BatchTooLargeError) return send(413, 'TOO_MANY_IMAGES', error.message);
    if (error instanceof QueueFullError) {
      reply.header('Retry-After', '1');
      return send(503, 'OVERLOADED', error.message);
    }
    // The runtime refusing a request's own input (after batcher.ts reran it alone): that request's 400.
    if (error instanceof InputError) return send(400, 'BAD_INPUT', withoutPaths(oneLine(error.message)));
    const status = (error as FastifyError).statusCode ?? 500;
    const fastifyCode = (error as FastifyError).code ?? '';
    if (status >= 400 && status < 500) {
      let message = error.message;
      if (fastifyCode === 'FST_ERR_CTP_BODY_TOO_LARGE' || fastifyCode === 'FST_REQ_FILE_TOO_LARGE') {
        message = `request body is larger than ${limits.bodyLimit} bytes (the server's --body-limit)`;
      } else if (fastifyCode === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') {
        message = `${message}: send application/json, image/png, image/jpeg or multipart/form-data`;
      } else if (fastifyCode === 'FST_ERR_CTP_INVALID_JSON_BODY' || fastifyCode === 'FST_ERR_CTP_EMPTY_JSON_BODY') {
        message = `${message}: the body must be one JSON object`;
      } else {
        message = clientErrorMessage(error as FastifyError, request.headers['content-encoding'], limits.maxBatch) ?? message;
      }
      return send(status, FASTIFY_CODES[fastifyCode] ?? (fastifyCode || 'BAD_REQUEST'), withoutPaths(oneLine(message)));
    }
    log(`error: ${error.stack ?? error.message}`);
    return send(500, 'INTERNAL', `internal error: ${withoutPaths(error.message)}`);
  };
}

/** 404 for a route that does not exist; 405 (with Allow) for a path that exists under other methods. */
export function notFoundHandler(request: FastifyRequest, reply: FastifyReply) {
  const path = request.url.split('?')[0]!;
  const allowed = ['GET', 'POST', 'PUT', 'DELETE'].filter((method) => method !== request.method && request.server.hasRoute({ method, url: path }));
  if (allowed.length) {
    const message = `${path} takes ${allowed.join(' or ')}, not ${request.method}: see GET /v1/model and the page at /`;
    return reply
      .code(405)
      .header('allow', allowed.join(', '))
      .send({ error: { code: 'METHOD_NOT_ALLOWED', message } } satisfies ErrorBody);
  }
  const message = `no route ${request.method} ${path}: see GET /v1/model and the page at /`;
  return reply.code(404).send({ error: { code: 'NOT_FOUND', message } } satisfies ErrorBody);
}
