/**
 * A local static server for the parity page: only the files it is given, on 127.0.0.1, with the cross-origin
 * isolation headers (COOP/COEP) that WebAssembly threads need.
 */
import { createReadStream, statSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { extname } from 'node:path';

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.map': 'application/json',
  '.json': 'application/json',
  '.wasm': 'application/wasm',
};

export interface StaticServer {
  origin: string;
  /** Serve another file (or bytes) at a path. */
  add(path: string, source: string | Uint8Array): void;
  close(): Promise<void>;
}

export async function serveFiles(files: Record<string, string | Uint8Array>): Promise<StaticServer> {
  const routes = new Map(Object.entries(files));
  const server: Server = createServer((req, res) => {
    const requested = decodeURIComponent(new URL(req.url ?? '/', 'http://localhost').pathname);
    const path = requested === '/' ? '/index.html' : requested;
    const source = routes.get(path);
    const headers = {
      'Cross-Origin-Opener-Policy': 'same-origin',
      'Cross-Origin-Embedder-Policy': 'require-corp',
      'Cross-Origin-Resource-Policy': 'same-origin',
      'Cache-Control': 'no-store',
      'Content-Type': TYPES[extname(path)] ?? 'application/octet-stream',
    };
    if (source === undefined) {
      res.writeHead(404, headers).end('not found');
      return;
    }
    if (typeof source !== 'string') {
      res.writeHead(200, { ...headers, 'Content-Length': source.byteLength }).end(source);
      return;
    }
    res.writeHead(200, { ...headers, 'Content-Length': statSync(source).size });
    createReadStream(source).pipe(res);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    origin: `http://127.0.0.1:${port}`,
    add: (path, source) => routes.set(path, source),
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}
