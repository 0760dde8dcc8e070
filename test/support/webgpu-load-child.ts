/**
 * Child process for test/e2e/export-webgpu.test.ts: loads a model on onnxruntime-node's webgpu device through the
 * runtime (WebGPU's Vulkan variables must be set when the process starts) and classifies one image. Prints one
 * JSON line: { ok: true, device, lengths } or { ok: false, name, message }.
 *
 *   node --import tsx test/support/webgpu-load-child.ts MODEL_PATH
 */
import { CapsNet } from '@capsnet-onnx/runtime/node';

const [modelPath] = process.argv.slice(2);
try {
  const model = await CapsNet.load(modelPath!, { device: 'webgpu', noCpuFallback: true });
  const m = model.metadata;
  const pixels = m.inputHeight * m.inputWidth * m.inputChannels;
  const [result] = await model.classify(Float32Array.from({ length: pixels }, (_, i) => ((i * 7919) % 101) / 100));
  console.log(JSON.stringify({ ok: true, device: model.device, lengths: Array.from(result!.lengths) }));
  await model.dispose();
} catch (e) {
  console.log(JSON.stringify({ ok: false, name: (e as Error).name, message: (e as Error).message }));
}
process.exit(0);
