// A static server for this example page: only the files named here, on 127.0.0.1, with the cross-origin isolation
// headers (COOP/COEP) that onnxruntime-web's multi-threaded wasm needs (without them it runs on one thread).
//   node server.mjs MODEL.onnx DIGITS.u8 [PORT]   ->  prints "listening on http://127.0.0.1:PORT/"
// onnxruntime-web's .wasm and its loader are served at /ort/ from the app's own install (ortWasmFiles()).
import { createReadStream, existsSync, readdirSync, statSync } from 'node:fs';
import { createServer } from 'node:http';
import { extname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ortWasmFiles } from '@capsnet-onnx/runtime/wasm-assets';

const [model, digits, port = '8080'] = process.argv.slice(2);
if (!model || !digits) {
  console.error('usage: node server.mjs MODEL.onnx DIGITS.u8 [PORT]');
  process.exit(2);
}
const here = fileURLToPath(new URL('.', import.meta.url));
const routes = new Map([
  ['/', join(here, 'index.html')],
  ['/model.onnx', model],
  ['/model.decoder.onnx', model.replace(/\.onnx$/, '.decoder.onnx')],
  ['/digits.u8', digits],
]);
// The page's own scripts: what the build wrote into dist/ (and vendor/, for the import-map page).
for (const folder of ['dist', 'vendor']) {
  const dir = join(here, folder);
  if (!existsSync(dir)) continue;
  for (const name of readdirSync(dir)) routes.set(`/${folder}/${name}`, join(dir, name));
}
for (const { name, path } of ortWasmFiles()) routes.set(`/ort/${name}`, path);

const TYPES = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript', '.mjs': 'text/javascript', '.wasm': 'application/wasm' };
const server = createServer((req, res) => {
  const file = routes.get(new URL(req.url ?? '/', 'http://localhost').pathname);
  const headers = {
    'Cross-Origin-Opener-Policy': 'same-origin',
    'Cross-Origin-Embedder-Policy': 'require-corp',
    'Content-Type': TYPES[extname(file ?? '')] ?? 'application/octet-stream',
  };
  if (!file || !existsSync(file)) {
    res.writeHead(404, { ...headers, 'Content-Type': 'text/plain' }).end('not found');
    return;
  }
  res.writeHead(200, { ...headers, 'Content-Length': statSync(file).size });
  createReadStream(file).pipe(res);
});
server.listen(Number(port), '127.0.0.1', () => console.log(`listening on http://127.0.0.1:${server.address().port}/`));
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => server.close(() => process.exit(0)));
