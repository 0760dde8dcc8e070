/** Shared by the serve tests: a fake Classifier (deterministic, countable, optionally slow) and HTTP helpers. */
import type { Classification, Classifier, ImageInput, ModelMetadata } from '@capsnet-onnx/runtime/node';
import { paperConfig } from '@capsnet-onnx/core';
import { readEnv } from './env.ts';

export const FAKE_METADATA: ModelMetadata = {
  inputHeight: 28,
  inputWidth: 28,
  inputChannels: 1,
  numClasses: 10,
  digitDim: 16,
  routingIterations: 3,
  classLabels: ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9'],
  dataset: 'mnist-sample',
  testAccuracy: null,
  checkpointSha256: 'fake',
  decoderSha256: '',
  datasetFiles: {},
  exportedAt: '2024-01-01T00:00:00Z',
  precision: 'fp32',
  computePrecision: 'fp32',
  producer: 'test',
  producerVersion: '0',
  config: paperConfig(),
  preprocessing: { method: 'mnist', polarity: 'light-on-dark' },
  preprocessingRecorded: true,
  presenceThreshold: 0.1,
};

/**
 * Label = round(9 * mean pixel); capsule k is filled with (k === label ? 0.1 * (d + 1) : 0); reconstruction =
 * the input; decode returns each capsule set's sum spread over the pixels. Counts runs and their sizes.
 */
export class FakeClassifier implements Classifier {
  readonly device = 'cpu' as const;
  readonly deviceReport = 'fake classifier (tests)';
  readonly metadata = FAKE_METADATA;
  runs: { kind: 'classify' | 'decode'; size: number }[] = [];
  delayMs = 0;
  failNext = false;
  disposed = false;

  async classify(images: ImageInput): Promise<Classification[]> {
    // The server passes prepared Float32Arrays only.
    const list = (Array.isArray(images) ? images : [images]) as Float32Array[];
    this.runs.push({ kind: 'classify', size: list.length });
    if (this.delayMs) await new Promise((r) => setTimeout(r, this.delayMs));
    if (this.failNext) {
      this.failNext = false;
      throw new Error('simulated runtime failure');
    }
    return list.map((image) => {
      const pixels = Float32Array.from(image, (v) => (image instanceof Uint8Array ? v / 255 : v));
      const mean = pixels.reduce((a, b) => a + b, 0) / pixels.length;
      const label = Math.min(9, Math.round(9 * mean));
      const lengths = Float32Array.from({ length: 10 }, (_, k) => (k === label ? 0.9 : 0.05));
      const capsules = new Float32Array(160);
      for (let d = 0; d < 16; d++) capsules[label * 16 + d] = 0.1 * (d + 1);
      return { label, labelName: String(label), longest: label, lengths, capsules, reconstruction: pixels };
    });
  }

  async decode(capsules: Float32Array | Float32Array[]): Promise<Float32Array[]> {
    const list = Array.isArray(capsules) ? capsules : [capsules];
    this.runs.push({ kind: 'decode', size: list.length });
    if (this.delayMs) await new Promise((r) => setTimeout(r, this.delayMs));
    return list.map((set) => new Float32Array(784).fill(Math.min(1, Math.abs(set.reduce((a, b) => a + b, 0)) / 100)));
  }

  async dispose(): Promise<void> {
    this.disposed = true;
  }
}

export async function postJson(base: string, path: string, body: unknown): Promise<{ status: number; json: any; headers: Headers }> {
  const response = await fetch(`${base}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  return { status: response.status, json: await response.json(), headers: response.headers };
}

export async function getJson(base: string, path: string): Promise<{ status: number; json: any; headers: Headers }> {
  const response = await fetch(`${base}${path}`);
  return { status: response.status, json: await response.json(), headers: response.headers };
}

/**
 * The small trained fixture (test/support/fixtures.ts), exported once with the real CLI beside its run directory:
 * returns the model path (the decoder is `<model>.decoder.onnx`).
 */
export async function exportedSmallModel(): Promise<string> {
  // CAPSNET_SERVE_MODEL=path/model.onnx runs the serve tests on another exported model instead.
  const given = readEnv('CAPSNET_SERVE_MODEL');
  if (given) return given;
  const { existsSync, mkdirSync } = await import('node:fs');
  const { dirname, join } = await import('node:path');
  const { execa } = await import('execa');
  const { CLI, ROOT, trainedSmallRun } = await import('./fixtures.ts');
  const run = await trainedSmallRun();
  const model = join(run, 'serve', 'model.onnx');
  if (!existsSync(model) || !existsSync(model.replace(/\.onnx$/, '.decoder.onnx'))) {
    mkdirSync(dirname(model), { recursive: true });
    // --overwrite: a model left without its decoder (an earlier run killed midway) is this helper's own.
    await execa('node', [CLI, 'export', run, '-o', model, '--overwrite'], { cwd: ROOT, stdio: 'inherit' });
  }
  return model;
}

/** Start `capsnet serve` as a child process on a free loopback port; resolves once it listens. */
export async function startServeProcess(model: string, extraArgs: string[] = []) {
  const { spawn } = await import('node:child_process');
  const { CLI, ROOT } = await import('./fixtures.ts');
  const child = spawn(process.execPath, [CLI, 'serve', model, '--port', '0', '--host', '127.0.0.1', ...extraArgs], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`capsnet serve did not start within 60 s:\n${output}`)), 60_000);
    const check = () => {
      const match = /listening on (http:\/\/\S+)/.exec(output);
      if (match) {
        clearTimeout(timer);
        resolve(match[1]!);
      }
    };
    child.stdout.on('data', check);
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`capsnet serve exited with ${code} before listening:\n${output}`));
    });
  });
  return {
    url,
    child,
    exited,
    output: () => output,
    async stop(): Promise<number | null> {
      if (child.exitCode === null) child.kill('SIGTERM');
      return exited;
    },
  };
}
