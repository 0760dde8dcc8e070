// A KServe v2 (Open Inference Protocol) client: the same request works against `capsnet serve` (under /v2),
// Triton and KServe serving the `capsnet export --triton` repository. Plain fetch, no client library.
//   node client.mjs SERVER_URL DIGITS.u8 [MODEL_NAME]   ->  one JSON line: the predicted class of each digit
import { readFile } from 'node:fs/promises';

const [server, digitsPath, modelName = 'capsnet'] = process.argv.slice(2);
if (!server || !digitsPath) {
  console.error('usage: node client.mjs SERVER_URL DIGITS.u8 [MODEL_NAME]   (e.g. http://127.0.0.1:8080)');
  process.exit(2);
}
const base = server.replace(/\/$/, '');
const call = async (path, body) => {
  const response = await fetch(`${base}${path}`, body ? { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) } : {});
  const json = await response.json();
  // The protocol's errors are {"error": "..."}: one line naming the field and the fix.
  if (!response.ok) throw new Error(`${path}: ${response.status} ${json.error ?? JSON.stringify(json)}`);
  return json;
};

try {
  await call('/v2/health/ready');
  // The model's metadata: its input's shape (-1: the batch) tells the image size.
  const meta = await call(`/v2/models/${modelName}`);
  const input = meta.inputs.find((i) => i.name === 'images');
  const [, h, w, c] = input.shape;
  // Pixels go to the model as they are: float32 in [0, 1], NHWC, row-major. Bytes 0-255 are divided by 255.
  const bytes = new Uint8Array(await readFile(digitsPath));
  const n = bytes.length / (h * w * c);
  // A server caps the images of one request (capsnet serve: --max-batch, 32 by default; Triton: max_batch_size), and
  // refuses more with a 400 that says so: send them in requests of at most BATCH.
  const BATCH = 16;
  const predictions = [];
  let reply;
  for (let start = 0; start < n; start += BATCH) {
    const count = Math.min(BATCH, n - start);
    const pixels = bytes.subarray(start * h * w * c, (start + count) * h * w * c);
    reply = await call(`/v2/models/${modelName}/infer`, {
      id: `digits-${start}`,
      inputs: [{ name: 'images', shape: [count, h, w, c], datatype: 'FP32', data: Array.from(pixels, (v) => v / 255) }],
      outputs: [{ name: 'lengths' }],
    });
    // lengths: [count, classes], flat and row-major; the class is the longest capsule.
    const lengths = reply.outputs.find((o) => o.name === 'lengths');
    const classes = lengths.shape[1];
    for (let i = 0; i < count; i++) {
      const row = lengths.data.slice(i * classes, (i + 1) * classes);
      predictions.push(row.indexOf(Math.max(...row)));
    }
  }
  console.log(JSON.stringify({ model: reply?.model_name, version: reply?.model_version, predictions }));
} catch (error) {
  console.error(`kserve client: ${error.message}`);
  process.exit(1);
}
