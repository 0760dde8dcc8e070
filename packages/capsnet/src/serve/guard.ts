/**
 * Checks every request passes before routing, and headers every answer carries:
 *  - Host allowlist against DNS rebinding: a page on evil.example resolved to 127.0.0.1 sends `Host: evil.example`
 *    and gets 403 `HOST_NOT_ALLOWED`.
 *  - Cross-origin POSTs: a form or a "simple" fetch from another origin reaches the handler before any CORS check in
 *    the browser, so it is refused (403 `CROSS_ORIGIN`) unless `cors` names that origin.
 *  - COOP/COEP/CORP (cross-origin isolation, so the page's wasm runs threaded) and nosniff on every answer;
 *    `Connection: close` while the server shuts down, so close() does not wait out keep-alive connections.
 */
import { hostname, networkInterfaces } from 'node:os';
import cors from '@fastify/cors';
import type { FastifyInstance } from 'fastify';
import type { ErrorBody } from './errors.ts';

const LOOPBACK_NAMES = ['localhost', '127.0.0.1', '::1'];

/** The host name of a Host header, lower-cased, without its port ([::1]:8080 -> ::1). */
export function hostOf(header: string): string {
  const match = /^\[([^\]]+)\](?::\d+)?$/.exec(header) ?? /^([^:]*)(?::\d+)?$/.exec(header);
  return (match ? match[1]! : header).toLowerCase();
}

/** Names a request may carry in its Host header when the server listens on `host`. */
export function allowedHostNames(host: string, extra: string[]): Set<string> {
  const names = new Set([...LOOPBACK_NAMES, ...extra.map((h) => hostOf(h)), hostOf(host)]);
  if (host === '0.0.0.0' || host === '::') {
    // Every interface: the machine's own names and addresses, still not any name a DNS server cares to point here.
    names.add(hostname().toLowerCase());
    for (const list of Object.values(networkInterfaces())) for (const a of list ?? []) names.add(a.address.toLowerCase());
  }
  return names;
}

export interface GuardOptions {
  /** The Host names allowed now (they change when the server learns the address it listens on). */
  allowedHosts: () => Set<string>;
  /** The one origin allowed to call the API from a browser. */
  cors?: string;
  /** Whether the server is shutting down. */
  closing: () => boolean;
}

/** Add the request checks and the response headers to `app` (its root: they apply to every route). */
export async function guard(app: FastifyInstance, options: GuardOptions): Promise<void> {
  const refuse = (code: string, message: string) => ({ error: { code, message } }) satisfies ErrorBody;
  app.addHook('onRequest', async (request, reply) => {
    const host = request.headers.host;
    if (host !== undefined && !options.allowedHosts().has(hostOf(host))) {
      const message = `Host ${JSON.stringify(host.slice(0, 100))} is not served here: use the server's own address, or start it with --allowed-host NAME`;
      return reply.code(403).send(refuse('HOST_NOT_ALLOWED', message));
    }
    const origin = request.headers.origin;
    if (request.method === 'POST' && origin !== undefined && origin !== options.cors) {
      let sameOrigin = false;
      try {
        sameOrigin = new URL(origin).host === host;
      } catch {
        sameOrigin = false;
      }
      if (!sameOrigin) {
        const message = `requests from origin ${JSON.stringify(origin.slice(0, 100))} are not allowed: start the server with --cors ORIGIN to allow one`;
        return reply.code(403).send(refuse('CROSS_ORIGIN', message));
      }
    }
  });
  if (options.cors) await app.register(cors, { origin: options.cors, methods: ['GET', 'POST'] });

  app.addHook('onSend', async (_request, reply, payload) => {
    // Cross-origin isolation (SharedArrayBuffer, so wasm threads) for the page and everything it loads.
    reply.header('Cross-Origin-Opener-Policy', 'same-origin');
    reply.header('Cross-Origin-Embedder-Policy', 'require-corp');
    reply.header('Cross-Origin-Resource-Policy', 'same-origin');
    reply.header('X-Content-Type-Options', 'nosniff');
    if (options.closing()) reply.header('Connection', 'close');
    return payload;
  });
}
