/**
 * onnxruntime-node, an optional peer dependency of this package (an app installs the ONNX Runtime it runs on):
 * imported at first use, so that an app without it gets an error that says what to install instead of a failed
 * module import at start.
 */
import { DeviceUnavailableError } from '@capsnet-onnx/core';
import type { OrtApi } from './classifier.ts';

/** The part of onnxruntime-node this package uses. */
export interface OrtNode extends OrtApi {
  listSupportedBackends(): { name: string }[];
}

export const ORT_NODE_INSTALL = 'ONNXRUNTIME_NODE_INSTALL=skip npm install onnxruntime-node';

let loading: Promise<OrtNode> | undefined;

/** onnxruntime-node's module; a DeviceUnavailableError naming the install command when it is not installed. */
export function ortNode(): Promise<OrtNode> {
  loading ??= import('onnxruntime-node').then(
    (m) => m as unknown as OrtNode,
    (e: unknown) => {
      loading = undefined;
      const error = e as NodeJS.ErrnoException;
      if (error.code === 'ERR_MODULE_NOT_FOUND' && /onnxruntime-node/.test(error.message)) {
        throw new DeviceUnavailableError(
          `onnxruntime-node is not installed: @capsnet-onnx/runtime runs models on it in Node (an optional peer ` +
            `dependency): run \`${ORT_NODE_INSTALL}\` in your app (or import @capsnet-onnx/runtime/web to run on onnxruntime-web)`,
        );
      }
      throw e;
    },
  );
  return loading;
}
