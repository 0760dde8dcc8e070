/**
 * onnxruntime-node, CUDA execution provider. The npm package does not bundle it: it is downloaded by
 * onnxruntime-node's own installer (`CUDA_INSTALL_COMMAND`), and it needs an NVIDIA GPU with its driver plus
 * the CUDA 12 runtime and cuDNN 9 libraries at run time.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, relative } from 'node:path';
import { DEVICE_TABLE } from '../devices.ts';
import { defineProvider, explainGpuFailure, gpuSessionOptions } from './provider.ts';

export { CUDA_INSTALL_COMMAND } from '../devices.ts';
const INSTALL_HINT = DEVICE_TABLE.find((r) => r.provider === 'node-cuda')!.install;

/** Where onnxruntime-node keeps its native libraries for this platform. */
export function ortNodeBinDir(): string {
  const main = createRequire(import.meta.url).resolve('onnxruntime-node');
  return join(dirname(main), '..', 'bin', 'napi-v6', process.platform, process.arch);
}

export function cudaProviderLibrary(): string {
  return join(ortNodeBinDir(), process.platform === 'win32' ? 'onnxruntime_providers_cuda.dll' : 'libonnxruntime_providers_cuda.so');
}

/** Whether an NVIDIA driver is visible (Linux: /proc/driver/nvidia; elsewhere unknown, so assume yes). */
export function nvidiaDriverPresent(): boolean {
  if (process.platform !== 'linux') return true;
  return existsSync('/proc/driver/nvidia/version') || existsSync('/dev/nvidia0');
}

export const nodeCuda = defineProvider('node-cuda', {
  async unavailable() {
    const platform = `${process.platform}/${process.arch}`;
    if (platform !== 'linux/x64' && platform !== 'win32/x64') {
      return `onnxruntime-node has a CUDA provider only for linux/x64 and win32/x64, not ${platform}: use device "cpu" or "webgpu"`;
    }
    // Without a driver the provider library does not matter: say only that.
    if (!nvidiaDriverPresent()) return `no NVIDIA GPU driver found (/proc/driver/nvidia/version is missing): ${INSTALL_HINT}, or use device "cpu"`;
    const library = cudaProviderLibrary();
    if (!existsSync(library)) {
      return (
        `the CUDA provider library is not installed (${relative(process.cwd(), library) || library} is missing: installs with ` +
        `ONNXRUNTIME_NODE_INSTALL=skip leave it out): ${INSTALL_HINT}, or use device "cpu"`
      );
    }
    return null;
  },
  sessionOptions(options) {
    return gpuSessionOptions({ name: 'cuda', deviceId: 0 }, options);
  },
  explainFailure(error) {
    return explainGpuFailure(
      error,
      (message) =>
        `${message}. The CUDA provider needs the NVIDIA driver, the CUDA 12 runtime (libcudart.so.12, libcublas.so.12) ` +
        'and cuDNN 9 (libcudnn.so.9) on the library path (LD_LIBRARY_PATH); check `nvidia-smi`, install them, or use device "cpu"',
    );
  },
});

export default nodeCuda;
