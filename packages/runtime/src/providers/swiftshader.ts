/**
 * Chromium's SwiftShader: a software Vulkan driver, so onnxruntime-node's WebGPU (Dawn over Vulkan) can run on a
 * Linux machine with no GPU. Slow (it is a CPU emulating a GPU); for checking WebGPU code paths, not for speed.
 * The variables must be in the environment when the process starts (LD_LIBRARY_PATH is read at startup).
 */
import { existsSync } from 'node:fs';

export const SWIFTSHADER_DIR = '/usr/lib/chromium';

export function swiftShaderEnv(): Record<string, string> | null {
  const icd = `${SWIFTSHADER_DIR}/vk_swiftshader_icd.json`;
  if (process.platform !== 'linux' || !existsSync(icd)) return null;
  return {
    // Chromium ships its own Vulkan loader (libvulkan.so.1) beside SwiftShader; a system one works as well.
    LD_LIBRARY_PATH: [SWIFTSHADER_DIR, process.env.LD_LIBRARY_PATH].filter(Boolean).join(':'),
    VK_ICD_FILENAMES: icd,
    XDG_RUNTIME_DIR: process.env.XDG_RUNTIME_DIR ?? '/tmp',
  };
}
