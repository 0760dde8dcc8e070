#!/usr/bin/env node
// Child process for export/placement.ts: opens one ONNX model on one ONNX Runtime execution provider with
// verbose logging (ORT writes its log, node placements included, to stderr), runs it once on a constant
// input, and prints one line `PROBE {"ok":true,"outputs":{name:[dims]}, "firstValues":{...}}` on stdout.
// Plain JavaScript so it starts without the TypeScript loader.
//   node export/ep-probe.mjs MODEL.onnx EP INPUT_NAME DIM,DIM,...
import { readFileSync } from 'node:fs';
import * as ort from 'onnxruntime-node';

const [modelPath, ep, inputName, dimsText] = process.argv.slice(2);
if (!modelPath || !ep || !inputName || !dimsText) {
  console.error('usage: ep-probe.mjs MODEL.onnx EP INPUT_NAME DIM,DIM,...');
  process.exit(2);
}
const dims = dimsText.split(',').map(Number);
try {
  ort.env.logLevel = 'verbose';
  const session = await ort.InferenceSession.create(readFileSync(modelPath), {
    executionProviders: [ep],
    logSeverityLevel: 0,
    logVerbosityLevel: 0,
  });
  const size = dims.reduce((a, b) => a * b, 1);
  const data = Float32Array.from({ length: size }, (_, i) => ((i * 7919) % 256) / 255);
  const outputs = await session.run({ [inputName]: new ort.Tensor('float32', data, dims) });
  const result = { ok: true, outputs: {}, values: {} };
  for (const [name, tensor] of Object.entries(outputs)) {
    result.outputs[name] = tensor.dims;
    result.values[name] = Array.from(tensor.data.slice(0, 64));
  }
  await session.release();
  console.log(`PROBE ${JSON.stringify(result)}`);
} catch (e) {
  console.log(`PROBE ${JSON.stringify({ ok: false, error: String(e?.message ? e.message : e).split('\n')[0] })}`);
  process.exitCode = 1;
}
