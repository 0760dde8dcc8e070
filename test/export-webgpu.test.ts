/**
 * The exported graph runs entirely on ONNX Runtime's WebGPU provider: ORT's verbose log (read from a child
 * process, see export/placement.ts) must show no compute node on the CPU provider. On a machine without a GPU
 * this uses SwiftShader's software Vulkan from Debian's chromium package, which is slow, so the model is tiny
 * and the batch is 1. If no WebGPU adapter can be brought up the test says why and skips (never silently).
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { derivedSizes, presetConfig } from '@capsnet-onnx/core';
import { buildCapsNetModels } from '../packages/capsnet/src/export/exporter.ts';
import { DataType, encodeModel } from '../packages/capsnet/src/export/onnx-schema.ts';
import { GraphBuilder, buildModel } from '../packages/capsnet/src/export/graph-builder.ts';
import { SWIFTSHADER_ICD, cpuComputeNodes, probePlacement, webgpuEnv } from '../packages/capsnet/src/export/placement.ts';
import { syntheticWeights } from './support/tiny-model.ts';

const tiny = presetConfig('small', { inputHeight: 20, inputWidth: 20, inputChannels: 1, numClasses: 4 }, {
  conv1Filters: 8, conv1Kernel: 5, primaryMaps: 2, primaryDim: 4, primaryKernel: 5, digitDim: 6, decoderHidden: [16, 24],
});

/** Why WebGPU cannot run here, if it cannot (a missing adapter is an environment problem, not a failure). */
function unavailable(probe: { ok: boolean; error?: string; log: string }): string | null {
  if (probe.ok || !probe.error || !/adapter|vulkan|dawn/i.test(probe.error)) return null;
  const short = /Failed to get a WebGPU adapter[^\n]*/.exec(probe.error)?.[0] ?? probe.error;
  const vulkan = /Couldn't load Vulkan[^\n]*/.exec(probe.log)?.[0];
  return vulkan ? `${short}; ${vulkan}` : short;
}

let dir: string;
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'capsnet-webgpu-'));
});
after(() => rmSync(dir, { recursive: true, force: true }));

describe('WebGPU execution provider', () => {
  // fp16 and int8 exports add Cast / DequantizeLinear in front of the weights: those must run on WebGPU too.
  for (const precision of ['fp32', 'fp16', 'int8'] as const) test(`no compute node of the ${precision} export is placed on the CPU`, { timeout: 300_000 }, async (t) => {
    const { model } = buildCapsNetModels(tiny, syntheticWeights(tiny, 3, (name) => (name === 'digit/W' ? 0.3 : 0.1)), {
      classLabels: ['a', 'b', 'c', 'd'], dataset: 'synthetic', testAccuracy: null, checkpointSha256: '', precision,
    });
    const file = join(dir, `tiny.${precision}.onnx`);
    writeFileSync(file, encodeModel(model));
    const dims = [1, tiny.inputHeight, tiny.inputWidth, tiny.inputChannels];
    const env = webgpuEnv();
    const gpu = await probePlacement(file, { ep: 'webgpu', input: 'images', dims, env, timeoutMs: 240_000 });
    if (!gpu.ok) {
      const reason = unavailable(gpu);
      if (reason) {
        const why = `WebGPU could not be brought up (${reason}); VK_ICD_FILENAMES=${env.VK_ICD_FILENAMES ?? '(unset)'}` +
          `${existsSync(SWIFTSHADER_ICD) ? '' : `, ${SWIFTSHADER_ICD} missing: install Debian's chromium`}`;
        console.warn(`SKIP: ${why}`);
        t.skip(why);
        return;
      }
      assert.fail(`WebGPU session failed: ${gpu.error}\n${gpu.log.slice(-2000)}`);
    }
    assert.ok(gpu.placements, `ORT printed no node placements; log tail:\n${gpu.log.slice(-2000)}`);
    const summary = gpu.placements!.map((p) => `${p.provider}: ${p.count}`).join(', ');
    console.log(`WebGPU placement (${gpu.seconds.toFixed(1)} s): ${summary}`);
    t.diagnostic(`placement: ${summary}`);
    assert.deepEqual(cpuComputeNodes(gpu.placements!), [], 'compute nodes on CPUExecutionProvider');
    assert.ok(gpu.placements!.some((p) => p.provider === 'WebGpuExecutionProvider' && p.count > 0));
    const { numPrimaryCaps, pixels } = derivedSizes(tiny);
    assert.deepEqual(gpu.outputs, { lengths: [1, 4], capsules: [1, 4, 6], reconstruction: [1, pixels], coupling: [1, numPrimaryCaps, 4] });

    // Same numbers as the CPU provider (loose: different kernels, float32).
    const cpu = await probePlacement(file, { ep: 'cpu', input: 'images', dims, timeoutMs: 60_000 });
    assert.ok(cpu.ok, cpu.error);
    for (const name of Object.keys(cpu.values!)) {
      const a = gpu.values![name]!;
      const b = cpu.values![name]!;
      const diff = Math.max(...a.map((v, i) => Math.abs(v - b[i]!)));
      assert.ok(diff <= 1e-4, `${name}: WebGPU vs CPU differ by ${diff}`);
    }
  });

  test('control: the log check does catch a node that falls back to the CPU (an int64 Equal)', { timeout: 300_000 }, async (t) => {
    const g = new GraphBuilder('fallback');
    const x = g.input('x', ['N', 4], 'any floats');
    const equal = g.node('Equal', [g.cast(x, DataType.INT64), g.constInt64([0, 1, 2, 3])])[0]!;
    g.relu(g.add(g.cast(equal, DataType.FLOAT), x), { output: 'y' });
    g.output('y', ['N', 4], 'y');
    const file = join(dir, 'fallback.onnx');
    writeFileSync(file, encodeModel(buildModel(g.graph(), { producerName: 'test', producerVersion: '0' })));
    const probe = await probePlacement(file, { ep: 'webgpu', input: 'x', dims: [1, 4], env: webgpuEnv(), timeoutMs: 120_000 });
    const reason = unavailable(probe);
    if (reason) {
      console.warn(`SKIP: WebGPU could not be brought up (${reason})`);
      t.skip(`WebGPU could not be brought up (${reason})`);
      return;
    }
    assert.ok(probe.ok, probe.error);
    assert.deepEqual(cpuComputeNodes(probe.placements ?? []).map((n) => n.opType), ['Equal']);
  });
});
