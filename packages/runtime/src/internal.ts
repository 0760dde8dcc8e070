/**
 * `@capsnet-onnx/runtime/internal`: what this repository's toolchain (the `capsnet` command, parity, benchmarks)
 * needs beyond the public entries, kept off them. No stability promise: an app imports `@capsnet-onnx/runtime`
 * (or `/node`, `/web`). Node only.
 */
export {
  CUDA_INSTALL_COMMAND,
  DEVICE_TABLE,
  RUNTIME_PACKAGES,
  autoOrder,
  deviceNames,
  devicesOf,
  nodeDevice,
  nodeDeviceNames,
  type DeviceHost,
  type DeviceName,
  type DeviceRow,
  type DeviceRuntime,
} from './devices.ts';
export { nodeProviders } from './node-providers.ts';
export { cudaProviderLibrary, nvidiaDriverPresent, ortNodeBinDir } from './providers/node-cuda.ts';
export { SWIFTSHADER_DIR, swiftShaderEnv } from './providers/swiftshader.ts';
export { defineProvider, type Fp16Compute, type Provider, type ProviderImpl } from './providers/provider.ts';
