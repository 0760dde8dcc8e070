/**
 * Node entry point: CapsNet over onnxruntime-node, devices cpu, cuda and webgpu.
 *
 *   const model = await CapsNet.load('model.onnx', { device: 'auto' });
 *   const [result] = await model.classify(pixels);
 *
 * The devices are the device table's `node` rows (devices.ts). `auto` tries cuda, then cpu. WebGPU is used only when
 * asked for by name: onnxruntime-node's Dawn picks the adapter without telling us which, and on a machine without a
 * GPU it is a software renderer (SwiftShader) far slower than the CPU provider; where CUDA exists it is the faster
 * GPU path.
 */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { type DecoderSource, loadClassifier, modelAndOptions, toModelBytes } from './classifier.ts';
import { ortNode } from './ort-node.ts';
import type { Classifier, DeviceName, LoadOptions, ModelSource } from './contract.ts';
import { ModelFileError, decoderPathFor } from '@capsnet-onnx/core';
import { autoOrder, devicesOf } from './devices.ts';
import { nodeProviders } from './node-providers.ts';

export * from './contract.ts';
export { CUDA_INSTALL_COMMAND } from './devices.ts';
export * from './image-exports.ts';

const NODE_AUTO_ORDER = autoOrder('node') as DeviceName[];

/** A model or decoder file's bytes; a missing or unreadable file is a ModelFileError naming it. */
async function readModel(path: string, what: 'model' | 'decoder'): Promise<Uint8Array> {
  try {
    return await readFile(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') {
      const make = what === 'model' ? 'export one with `capsnet export`' : '`capsnet export` writes it beside its model';
      throw new ModelFileError(`${what} file ${path} does not exist: check the path, or ${make}`, path, 'NOT_FOUND');
    }
    throw new ModelFileError(`cannot read ${what} file ${path}: ${(e as Error).message}`, path, 'UNREADABLE');
  }
}

export const CapsNet = {
  devices: devicesOf('node').map((r) => r.name as DeviceName),
  autoOrder: NODE_AUTO_ORDER,

  /**
   * Load model.onnx (a path, its bytes, or `{ model, decoder }` such as `pretrained('mnist-small')`); its decoder from
   * options.decoder, the object's `decoder`, or `<model>.decoder.onnx` beside it; none with `{ decoder: false }`.
   */
  async load(source: ModelSource, loadOptions: LoadOptions = {}): Promise<Classifier> {
    const { model: fileOrBytes, options } = modelAndOptions(source, loadOptions);
    const bytes = typeof fileOrBytes === 'string' ? await readModel(fileOrBytes, 'model') : toModelBytes(fileOrBytes, 'the model');
    const name = typeof fileOrBytes === 'string' ? fileOrBytes : 'the model';
    let decoder: DecoderSource;
    if (options.decoder === false)
      decoder = async () => ({ missing: 'the decoder was not loaded (CapsNet.load with { decoder: false }): load without it to decode' });
    else if (options.decoder !== undefined && typeof options.decoder !== 'string') decoder = toModelBytes(options.decoder, 'options.decoder');
    else if (typeof options.decoder === 'string') decoder = await readModel(options.decoder, 'decoder');
    else if (typeof fileOrBytes === 'string') {
      const path = decoderPathFor(fileOrBytes);
      decoder = async () =>
        existsSync(path) ? readModel(path, 'decoder') : { missing: `${path} does not exist (\`capsnet export\` writes it beside the model)`, path };
    } else decoder = async () => ({ missing: 'the model was loaded from bytes: pass { decoder: bytes or path } to CapsNet.load' });
    return loadClassifier(
      await ortNode(),
      bytes,
      name,
      decoder,
      await nodeProviders(),
      NODE_AUTO_ORDER,
      options,
      '@capsnet-onnx/runtime/node (onnxruntime-node)',
    );
  },

  /** Each Node device and why it cannot run here (null: it can be tried). */
  async probe(): Promise<Record<string, string | null>> {
    const out: Record<string, string | null> = {};
    for (const p of await nodeProviders()) out[p.device] = await p.unavailable();
    return out;
  },
};

export default CapsNet;
