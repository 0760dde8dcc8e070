/** Worker processes for parity and the inference benchmark: one ONNX Runtime per process, its own environment. */
import { execFile, fork } from 'node:child_process';
import { nvidiaDriverPresent, swiftShaderEnv } from '@capsnet-onnx/runtime/internal';

/**
 * Environment for a worker process; for onnxruntime-node's WebGPU, SwiftShader where this Linux machine has no
 * GPU driver (and no Vulkan ICD chosen by the user). `software` tells the caller to keep input counts small.
 */
export function webGpuWorkerEnv(): { env: NodeJS.ProcessEnv; note: string; software: boolean } {
  if (process.env.VK_ICD_FILENAMES) {
    return { env: process.env, note: `Vulkan ICD ${process.env.VK_ICD_FILENAMES}`, software: /swiftshader|lvp|lavapipe/i.test(process.env.VK_ICD_FILENAMES) };
  }
  const sw = nvidiaDriverPresent() ? null : swiftShaderEnv();
  if (sw) return { env: { ...process.env, ...sw }, note: 'SwiftShader (software Vulkan: no GPU driver here)', software: true };
  return { env: process.env, note: 'system Vulkan drivers', software: false };
}

/**
 * Node flags for a child that runs `modulePath`: a TypeScript module (this repository's sources) gets tsx, resolved
 * from this package rather than the current folder, and the workspace packages' source condition; compiled
 * JavaScript (an installed package) needs none.
 */
function childExecArgv(modulePath: string): string[] {
  if (!/\.[cm]?ts$/.test(modulePath)) return [];
  return ['--conditions=capsnet-source', '--import', import.meta.resolve('tsx')];
}

/** Fork a module (TypeScript or compiled), send it one message, resolve with its one reply (or an error on exit/timeout). */
export function forkWorker<R>(modulePath: string, args: string[], message: unknown, env: NodeJS.ProcessEnv, timeoutMs: number): Promise<R | { error: string }> {
  return new Promise((resolvePromise) => {
    const child = fork(modulePath, args, {
      execArgv: childExecArgv(modulePath),
      serialization: 'advanced',
      env,
      stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
    });
    let stderr = '';
    child.stderr!.on('data', (chunk: Buffer) => {
      stderr = (stderr + chunk.toString()).slice(-4000);
    });
    let settled = false;
    const finish = (reply: R | { error: string }) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolvePromise(reply);
    };
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      finish({ error: `timed out after ${timeoutMs / 1000} s` });
    }, timeoutMs);
    child.on('message', (m) => finish(m as R));
    child.on('exit', (code, signal) => {
      const tail = stderr.trim().split('\n').slice(-3).join(' | ');
      finish({ error: `worker exited (${signal ?? `code ${code}`}) without a result${tail ? `: ${tail}` : ''}` });
    });
    child.send(message as object);
  });
}

const ADAPTER_PROBE = `
import { create } from 'webgpu';
const adapter = await create([]).requestAdapter();
const i = adapter?.info;
console.log(JSON.stringify(i ? { description: [i.vendor, i.architecture, i.description].filter(Boolean).join(' '), fallback: !!i.isFallbackAdapter } : null));
process.exit(0);
`;

/**
 * Which adapter Dawn offers under `env`, asked in a throwaway process through the \`webgpu\` package (Dawn's Node
 * bindings): onnxruntime-node's WebGPU picks its adapter the same way but does not say which it got.
 */
export function describeWebGpuAdapter(env: NodeJS.ProcessEnv): Promise<string | null> {
  return new Promise((resolvePromise) => {
    execFile(process.execPath, ['--input-type=module', '-e', ADAPTER_PROBE], { env, timeout: 30_000 }, (error, stdout) => {
      if (error) return resolvePromise(null);
      try {
        const info = JSON.parse(stdout.trim().split('\n').at(-1) ?? 'null') as { description: string; fallback: boolean } | null;
        resolvePromise(info ? `${info.description}${info.fallback ? ' (software fallback adapter)' : ''}` : null);
      } catch {
        resolvePromise(null);
      }
    });
  });
}
