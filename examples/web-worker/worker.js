// The worker: loads the model once, then classifies every batch the page sends. The runtime's browser entry works
// in a worker as in a page (onnxruntime-web, devices wasm and webgpu).
import { CapsNet } from '@capsnet-onnx/runtime';

// The pretrained small CapsNet of @capsnet-onnx/mnist, from the installed package's models/ folder, which server.mjs
// serves at /models/ (its decoder, model.decoder.onnx, is found beside the model).
const MODEL_URL = '/models/mnist-small/model.onnx';
// A worker has no document: the model and onnxruntime-web's files are fetched by absolute path from the page's origin.
const loading = CapsNet.load(new URL(MODEL_URL, self.location.origin).href, { device: 'wasm', wasmPaths: '/ort/' });

self.onmessage = async ({ data }) => {
  try {
    const model = await loading;
    const { inputHeight: h, inputWidth: w, inputChannels: c } = model.metadata;
    const results = await model.classify({ data: data.digits, shape: [data.digits.length / (h * w * c), h, w, c] });
    self.postMessage({ device: model.device, predictions: results.map((r) => r.label), lengths: results.map((r) => Array.from(r.lengths)) });
  } catch (error) {
    self.postMessage({ error: String(error?.message ?? error) });
  }
};
