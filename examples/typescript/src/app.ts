// A TypeScript app type-checked under strict, noUncheckedIndexedAccess and exactOptionalPropertyTypes, once with
// moduleResolution node16 and once with bundler (tsconfig.node16.json, tsconfig.bundler.json).
import { type ModelCard, type PretrainedModel, type PretrainedPrecision, pretrained } from '@capsnet-onnx/mnist';
import { CapsNet, DeviceUnavailableError, InputError, type Classification, type Classifier, type LoadOptions, type ModelMetadata } from '@capsnet-onnx/runtime';
import { CapsNet as NodeCapsNet } from '@capsnet-onnx/runtime/node';
import { CapsNet as WebCapsNet, ORT_WASM_FILES, type WebLoadOptions } from '@capsnet-onnx/runtime/web';
import { CapsNet as WasmCapsNet, type LoadProgress, RgbaImage } from '@capsnet-onnx/runtime/web/wasm';
import { CapsNet as WebGpuCapsNet } from '@capsnet-onnx/runtime/web/webgpu';
import { ortWasmDir, ortWasmFiles } from '@capsnet-onnx/runtime/wasm-assets';

const options: LoadOptions = { device: 'auto', maxBatch: 8, log: (line: string) => console.log(line) };
const webOptions: WebLoadOptions = { device: 'wasm', wasmPaths: '/ort/' };
const webObjectPaths: WebLoadOptions = { wasmPaths: { wasm: new URL('https://example.com/ort.wasm') } };

// The pretrained small CapsNet: in Node, `model` is a file path; its card says how well it does on the official test set.
export async function topLabel(precision: PretrainedPrecision = 'fp32'): Promise<string> {
  const files: PretrainedModel = pretrained('mnist-small', precision);
  const card: ModelCard = files.card;
  const model: Classifier = await CapsNet.load(files, options);
  const meta: ModelMetadata = model.metadata;
  const pixels = new Uint8Array(meta.inputHeight * meta.inputWidth * meta.inputChannels);
  const results: Classification[] = await model.classify(pixels);
  const first = results[0];
  // noUncheckedIndexedAccess: results[0] may be undefined.
  if (!first) throw new Error('no result');
  // label is null when the image holds no digit; `longest` is always the longest capsule's class.
  const score: number | undefined = first.lengths[first.longest];
  await model.dispose();
  const accuracy = card.results[precision].accuracy;
  return first.label === null ? `no digit (${first.reason ?? ''}; test accuracy ${accuracy})` : `${first.labelName} ${score ?? 0}`;
}

export function errors(e: unknown): string {
  if (e instanceof InputError || e instanceof DeviceUnavailableError) return e.message;
  return String(e);
}

// The browser entries of one build each; a classify-only load with byte progress; page images through RgbaImage.
const progressOptions: WebLoadOptions = { decoder: false, onProgress: (p: LoadProgress) => console.log(p.file, p.loaded, p.total ?? 'unknown') };
export async function classifyFile(bytes: Uint8Array): Promise<Classification[]> {
  const model = await WasmCapsNet.load('/model.onnx', progressOptions);
  const image: RgbaImage = await RgbaImage.read(bytes);
  return model.classify([image, { data: image.data, width: image.width, height: image.height }]);
}

export const entries = [
  NodeCapsNet.devices,
  WebCapsNet.devices,
  WasmCapsNet.devices,
  WebGpuCapsNet.devices,
  ORT_WASM_FILES,
  webOptions,
  webObjectPaths,
] as const;
export const wasmDir: string = ortWasmDir();
export const wasmFiles: { name: string; path: string }[] = ortWasmFiles();
