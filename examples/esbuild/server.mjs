// A static server for this example page: only the files named here, on 127.0.0.1, with the cross-origin isolation
// headers (COOP/COEP) that onnxruntime-web's multi-threaded wasm needs (without them it runs on one thread).
//   node server.mjs DIGITS.u8 [PORT]   ->  prints "listening on http://127.0.0.1:PORT/"
// From the app's own install: onnxruntime-web's .wasm and its loader at /ort/ (ortWasmFiles()), and the pretrained
// models of @capsnet-onnx/mnist at /models/ (its models/ folder: /models/mnist-small/model.onnx and the rest).
import { createReadStream, existsSync, readdirSync, statSync } from 'node:fs';
import { createServer } from 'node:http';
import { dirname, extname, join, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { pretrained } from '@capsnet-onnx/mnist';
import { ortWasmFiles } from '@capsnet-onnx/runtime/wasm-assets';

const [digits, port = '8080'] = process.argv.slice(2);
if (!digits) {
  console.error('usage: node server.mjs DIGITS.u8 [PORT]   (node ../digits.mjs writes digits.u8: see ../README.md)');
  process.exit(2);
}
const here = fileURLToPath(new URL('.', import.meta.url));
const routes = new Map([
  ['/', join(here, 'index.html')],
  ['/digits.u8', digits],
]);
// The page's own scripts: what the build wrote into dist/ (and vendor/, for the import-map page).
for (const folder of ['dist', 'vendor']) {
  const dir = join(here, folder);
  if (!existsSync(dir)) continue;
  for (const name of readdirSync(dir)) routes.set(`/${folder}/${name}`, join(dir, name));
}
for (const { name, path } of ortWasmFiles()) routes.set(`/ort/${name}`, path);
// The package's models/ folder (in Node, pretrained() gives file paths: the folder is two levels above a model).
const models = dirname(dirname(pretrained('mnist-small').model));
for (const name of readdirSync(models, { recursive: true, encoding: 'utf8' })) {
  if (statSync(join(models, name)).isFile()) routes.set(`/models/${name.split(sep).join('/')}`, join(models, name));
}

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
