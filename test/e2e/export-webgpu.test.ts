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
import { derivedSizes } from '@capsnet-onnx/core';
import { buildCapsNetModels } from '../../packages/capsnet/src/export/exporter.ts';
import { DataType, encodeModel } from '../../packages/capsnet/src/export/onnx-schema.ts';
import { GraphBuilder, buildModel } from '../../packages/capsnet/src/export/graph-builder.ts';
import { SWIFTSHADER_ICD, cpuComputeNodes, probePlacement, webgpuEnv } from '../../packages/capsnet/src/export/placement.ts';
import { syntheticWeights, SQUARE_CONFIG } from '../support/tiny-model.ts';
import { ROOT } from '../support/fixtures.ts';
import { execa } from 'execa';
import { CapsNet } from '@capsnet-onnx/runtime/node';
import { FP16_COMPUTE_TOLERANCES } from '../../packages/capsnet/src/parity/matrix.ts';

/** ORT-WebGPU's message when a half-precision shader meets an adapter without shader-f16. */
const NO_SHADER_F16 = /requires f16 but the device does not support it/;

const tiny = SQUARE_CONFIG;

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
  // fp16 and int8 exports add Cast / DequantizeLinear in front of the weights, and fp16 compute adds float16
  // Conv/MatMul between Casts: those must run on WebGPU too.
  const variants = [['fp32'], ['fp16', 'fp32'], ['fp16', 'fp16'], ['int8']] as const;
  for (const [precision, compute] of variants)
    test(`no compute node of the ${precision} export${compute ? ` with ${compute} compute` : ''} is placed on the CPU`, { timeout: 300_000 }, async (t) => {
      const { model } = buildCapsNetModels(
        tiny,
        syntheticWeights(tiny, 3, (name) => (name === 'digit/W' ? 0.3 : 0.1)),
        {
          classLabels: ['a', 'b', 'c', 'd'],
          dataset: 'synthetic',
          testAccuracy: null,
          checkpointSha256: '',
          precision,
          compute,
        },
      );
      const file = join(dir, `tiny.${precision}${compute ?? ''}.onnx`);
      writeFileSync(file, encodeModel(model));
      const dims = [1, tiny.inputHeight, tiny.inputWidth, tiny.inputChannels];
      const env = webgpuEnv();
      const gpu = await probePlacement(file, { ep: 'webgpu', input: 'images', dims, env, timeoutMs: 240_000 });
      if (!gpu.ok) {
        const reason = unavailable(gpu);
        if (reason) {
          const why =
            `WebGPU could not be brought up (${reason}); VK_ICD_FILENAMES=${env.VK_ICD_FILENAMES ?? '(unset)'}` +
            `${existsSync(SWIFTSHADER_ICD) ? '' : `, ${SWIFTSHADER_ICD} missing: install Debian's chromium`}`;
          console.warn(`SKIP: ${why}`);
          t.skip(why);
          return;
        }
        if (compute === 'fp16' && gpu.error && NO_SHADER_F16.test(gpu.error)) {
          // This adapter cannot run half shaders (SwiftShader has no shader-f16): placement is decided at session
          // creation, so it is still checked; the run, and the runtime's error for it, are the next test's.
          assert.ok(gpu.placements, `ORT printed no node placements; log tail:\n${gpu.log.slice(-2000)}`);
          assert.deepEqual(cpuComputeNodes(gpu.placements!), [], 'compute nodes on CPUExecutionProvider');
          console.log(
            `fp16 compute on WebGPU: placement checked (${gpu.placements!.map((p) => `${p.provider}: ${p.count}`).join(', ')}); ` +
              `the adapter lacks shader-f16, so the run failed as expected: ${gpu.error.split('\n')[0]}`,
          );
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

      // Same numbers as the CPU provider (loose: different kernels; fp16 compute: half kernels on the GPU, float32
      // ones on activations rounded to fp16 on the CPU, within the fp16-compute parity tolerance).
      const cpu = await probePlacement(file, { ep: 'cpu', input: 'images', dims, timeoutMs: 60_000 });
      assert.ok(cpu.ok, cpu.error);
      const bound = compute === 'fp16' ? FP16_COMPUTE_TOLERANCES.reconstruction : 1e-4;
      for (const name of Object.keys(cpu.values!)) {
        const a = gpu.values![name]!;
        const b = cpu.values![name]!;
        const diff = Math.max(...a.map((v, i) => Math.abs(v - b[i]!)));
        assert.ok(diff <= bound, `${name}: WebGPU vs CPU differ by ${diff}`);
      }
    });

  test('an fp16-compute model on WebGPU: the runtime refuses an adapter without shader-f16 with the fix, or runs within tolerance', {
    timeout: 300_000,
  }, async (t) => {
    const built = buildCapsNetModels(
      tiny,
      syntheticWeights(tiny, 4, (name) => (name === 'digit/W' ? 0.3 : 0.1)),
      {
        classLabels: ['a', 'b', 'c', 'd'],
        dataset: 'synthetic',
        testAccuracy: null,
        checkpointSha256: '',
        precision: 'fp16',
      },
    );
    const file = join(dir, 'tiny.fp16-compute.onnx');
    writeFileSync(file, encodeModel(built.model));
    writeFileSync(join(dir, 'tiny.fp16-compute.decoder.onnx'), encodeModel(built.decoder));
    const child = await execa(process.execPath, ['--import', 'tsx', join(ROOT, 'test', 'support', 'webgpu-load-child.ts'), file], {
      cwd: ROOT,
      env: webgpuEnv(),
      reject: false,
      timeout: 240_000,
    });
    const reply = JSON.parse(child.stdout.split('\n').find((l) => l.startsWith('{')) ?? '{}') as {
      ok?: boolean;
      device?: string;
      lengths?: number[];
      name?: string;
      message?: string;
    };
    if (reply.ok === false && /Vulkan|no adapter|Failed to get a WebGPU adapter/i.test(reply.message ?? '') && !/shader-f16/.test(reply.message ?? '')) {
      console.warn(`SKIP: WebGPU could not be brought up (${reply.message})`);
      t.skip(`WebGPU could not be brought up (${reply.message})`);
      return;
    }
    if (reply.ok === false) {
      console.log(`case: the adapter lacks shader-f16; the runtime said: ${reply.message}`);
      assert.equal(reply.name, 'DeviceUnavailableError');
      assert.match(
        reply.message!,
        new RegExp(
          /^device "webgpu" cannot run .*tiny\.fp16-compute\.onnx: the model computes in fp16 \(capsnet\.compute_precision\)/.source +
            / and the WebGPU adapter lacks the shader-f16 feature: re-export it with `capsnet export RUN_DIR --precision fp16 --compute fp32`/.source +
            / \(fp16 weights, float32 maths\), or load it on another device$/.source,
        ),
      );
      assert.doesNotMatch(reply.message!, /shader_helper|\.cc:/, "not ORT's raw message");
      return;
    }
    assert.equal(reply.ok, true, child.stdout + child.stderr);
    const cpu = await CapsNet.load(file, { device: 'cpu' });
    const pixels = tiny.inputHeight * tiny.inputWidth * tiny.inputChannels;
    const [expected] = await cpu.classify(Float32Array.from({ length: pixels }, (_, i) => ((i * 7919) % 101) / 100));
    await cpu.dispose();
    const diff = Math.max(...reply.lengths!.map((v, i) => Math.abs(v - expected!.lengths[i]!)));
    console.log(`case: the adapter has shader-f16; WebGPU vs CPU lengths differ by ${diff.toExponential(2)} (tolerance ${FP16_COMPUTE_TOLERANCES.lengths})`);
    assert.equal(reply.device, 'webgpu');
    assert.ok(diff <= FP16_COMPUTE_TOLERANCES.lengths, `lengths differ by ${diff}`);
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
    assert.deepEqual(
      cpuComputeNodes(probe.placements ?? []).map((n) => n.opType),
      ['Equal'],
    );
  });
});
