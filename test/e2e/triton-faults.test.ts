/**
 * `export --triton` is crash-safe (issue 20, item 6): a SIGKILL at every step of the export (each mkdir, write,
 * rename, copy and removal under the test's folder, in turn: test/support/fault-child.ts's `step:N`) never leaves
 * the repository without its model, never leaves a model folder half old and half new, never leaves a new
 * classifier beside an old decoder, and never leaves a temp folder inside the repository (Triton would scan it as
 * a model); the next export sweeps what the kill left beside it and ends with exactly a clean export's files.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { execa } from 'execa';
import { CapsNet } from '@capsnet-onnx/runtime/node';
import { saveCheckpoint } from '../../packages/capsnet/src/files/checkpoint.ts';
import { exportCheckpoint } from '../../packages/capsnet/src/export/exporter.ts';
import { parseConfigText } from '../../packages/capsnet/src/export/triton.ts';
import { EXPORTED_AT } from '../support/fault-child.ts';
import { ROOT } from '../support/fixtures.ts';
import { TINY_CONFIG, syntheticWeights } from '../support/tiny-model.ts';

const CHILD = join(ROOT, 'test', 'support', 'fault-child.ts');
const FOLDERS = ['capsnet', 'capsnet_decoder'];

type Snapshot = Map<string, Buffer>;

/** Every file under `dir`, by relative path. */
function snapshot(dir: string): Snapshot {
  const files = readdirSync(dir, { recursive: true, withFileTypes: true }).filter((e) => e.isFile());
  return new Map(files.map((e) => [relative(dir, join(e.parentPath, e.name)), readFileSync(join(e.parentPath, e.name))]));
}

/** What a model folder serves: its config.pbtxt, the model in the version it pins, and its labels file. */
function served(folder: string): Snapshot {
  const text = readFileSync(join(folder, 'config.pbtxt'));
  const config = parseConfigText(text.toString('utf8')) as {
    version_policy?: { specific?: { versions?: number[] } };
    output?: Array<{ label_filename?: string }>;
  };
  const versions = config.version_policy?.specific?.versions ?? [];
  assert.equal(versions.length, 1, `${folder}: config.pbtxt pins one version`);
  const out: Snapshot = new Map([
    ['config.pbtxt', text],
    [`${versions[0]}/model.onnx`, readFileSync(join(folder, String(versions[0]), 'model.onnx'))],
  ]);
  const labels = config.output?.find((o) => o.label_filename)?.label_filename;
  if (labels) out.set(labels, readFileSync(join(folder, labels)));
  return out;
}

function same(a: Snapshot, b: Snapshot): boolean {
  return a.size === b.size && [...a].every(([k, v]) => b.get(k)?.equals(v));
}

async function child(runDir: string, repo: string, faultDir: string, fault?: string): Promise<'killed' | 'finished'> {
  const r = await execa('node', ['--import', 'tsx', CHILD, 'triton', runDir, repo], {
    cwd: ROOT,
    reject: false,
    env: { FAULT_DIR: faultDir, ...(fault ? { CAPSNET_FAULT: fault } : {}) },
  });
  if (r.signal === 'SIGKILL') return 'killed';
  assert.equal(r.exitCode, 0, `${fault ?? 'no fault'}: ${r.stderr.slice(-800)}`);
  return 'finished';
}

describe('SIGKILL at each step of export --triton', { timeout: 600_000 }, () => {
  let base: string;
  const runs = { old: '', new: '' };
  /** The repositories a clean export writes: the old run's, the new one's over it (overwrite), the new one's alone. */
  const reference = { old: new Map() as Snapshot, replaced: new Map() as Snapshot, fresh: new Map() as Snapshot };
  const servedBy = { old: new Map<string, Snapshot>(), new: new Map<string, Snapshot>() };

  before(() => {
    base = mkdtempSync(join(tmpdir(), 'capsnet-triton-faults-'));
    for (const [key, seed, labels] of [
      ['old', 1, ['a', 'b', 'c', 'd']],
      ['new', 2, ['w', 'x', 'y', 'z']],
    ] as const) {
      runs[key] = join(base, `run-${key}`);
      mkdirSync(runs[key]);
      saveCheckpoint(runs[key], {
        config: TINY_CONFIG,
        epoch: 1,
        step: 1,
        seed,
        run: { batchSize: 8 },
        dataset: `tiny-${key}`,
        classLabels: [...labels],
        backend: 'cpu',
        metrics: [],
        weights: syntheticWeights(TINY_CONFIG, seed, () => 0.3),
        optimizer: { m: {}, v: {} },
      });
    }
    const ref = join(base, 'reference');
    mkdirSync(ref);
    exportCheckpoint(runs.old, { triton: { dir: join(ref, 'old') }, exportedAt: EXPORTED_AT });
    exportCheckpoint(runs.old, { triton: { dir: join(ref, 'replaced') }, exportedAt: EXPORTED_AT });
    exportCheckpoint(runs.new, { triton: { dir: join(ref, 'replaced') }, exportedAt: EXPORTED_AT, overwrite: true });
    exportCheckpoint(runs.new, { triton: { dir: join(ref, 'fresh') }, exportedAt: EXPORTED_AT });
    reference.old = snapshot(join(ref, 'old'));
    reference.replaced = snapshot(join(ref, 'replaced'));
    reference.fresh = snapshot(join(ref, 'fresh'));
    for (const f of FOLDERS) {
      servedBy.old.set(f, served(join(ref, 'old', f)));
      servedBy.new.set(f, served(join(ref, 'replaced', f)));
    }
    assert.deepEqual(
      [...reference.replaced.keys()].sort(),
      ['capsnet/2/model.onnx', 'capsnet/config.pbtxt', 'capsnet/labels.2.txt', 'capsnet_decoder/2/model.onnx', 'capsnet_decoder/config.pbtxt'],
      'an overwrite serves version 2 and leaves no version 1',
    );
  });
  after(() => rmSync(base, { recursive: true, force: true }));

  test('over an existing repository (--overwrite): always a whole model in each folder, never a new classifier beside an old decoder', async () => {
    const parent = join(base, 'overwrite');
    const repo = join(parent, 'models');
    const states = new Set<string>();
    let steps = 0;
    for (let n = 1; n < 80; n++) {
      rmSync(parent, { recursive: true, force: true });
      mkdirSync(parent);
      exportCheckpoint(runs.old, { triton: { dir: repo }, exportedAt: EXPORTED_AT });
      if ((await child(runs.new, repo, parent, `step:${n}`)) === 'finished') break;
      steps = n;
      assert.deepEqual(readdirSync(repo).sort(), FOLDERS, `step ${n}: the repository holds its two model folders and nothing else`);
      const side = Object.fromEntries(
        FOLDERS.map((f) => {
          const now = served(join(repo, f));
          const which = same(now, servedBy.old.get(f)!) ? 'old' : same(now, servedBy.new.get(f)!) ? 'new' : undefined;
          assert.ok(which, `step ${n}: ${f} serves neither the old model nor the new one whole`);
          return [f, which];
        }),
      );
      const state = `classifier ${side.capsnet}, decoder ${side.capsnet_decoder}`;
      assert.notEqual(state, 'classifier new, decoder old', `step ${n}: a new classifier beside an old decoder`);
      if (!states.has(state) && side.capsnet !== side.capsnet_decoder) {
        // The one mixed state: the classifier's recorded decoder hash exposes it to every capsnet loader.
        const [model, decoder] = [join(repo, 'capsnet', '1', 'model.onnx'), join(repo, 'capsnet_decoder', '2', 'model.onnx')];
        await assert.rejects(CapsNet.load(readFileSync(model), { decoder: readFileSync(decoder), device: 'cpu' }), /the decoder does not belong to the model/);
      }
      states.add(state);
    }
    assert.ok(steps >= 10, `${steps} steps killed`);
    assert.deepEqual([...states].sort(), ['classifier new, decoder new', 'classifier old, decoder new', 'classifier old, decoder old']);
    // A kill leaves temp folders beside the repository at worst; the next export sweeps them and ends clean.
    const killAt = async (n: number) => {
      rmSync(parent, { recursive: true, force: true });
      mkdirSync(parent);
      exportCheckpoint(runs.old, { triton: { dir: repo }, exportedAt: EXPORTED_AT });
      assert.equal(await child(runs.new, repo, parent, `step:${n}`), 'killed');
    };
    await killAt(3);
    assert.equal(readdirSync(parent).length, 2, "the killed export's temp folder is beside the repository");
    await child(runs.new, repo, parent);
    assert.ok(same(snapshot(repo), reference.replaced), "the repository after the re-export is a clean export's");
    assert.deepEqual(readdirSync(parent), ['models'], 'no temp folder left beside the repository');
    // Killed while removing the old version: the re-export is the next version, with nothing else left.
    await killAt(steps);
    await child(runs.new, repo, parent);
    const files = snapshot(repo);
    assert.deepEqual([...files.keys()].sort(), [
      'capsnet/3/model.onnx',
      'capsnet/config.pbtxt',
      'capsnet/labels.3.txt',
      'capsnet_decoder/3/model.onnx',
      'capsnet_decoder/config.pbtxt',
    ]);
    assert.ok(files.get('capsnet/3/model.onnx')!.equals(reference.replaced.get('capsnet/2/model.onnx')!));
    assert.ok(files.get('capsnet_decoder/3/model.onnx')!.equals(reference.replaced.get('capsnet_decoder/2/model.onnx')!));
    assert.deepEqual(readdirSync(parent), ['models']);
  });

  test('into a new repository: the whole repository appears at once, or nothing', async () => {
    const parent = join(base, 'fresh');
    const repo = join(parent, 'models');
    let steps = 0;
    for (let n = 1; n < 40; n++) {
      rmSync(parent, { recursive: true, force: true });
      mkdirSync(parent);
      if ((await child(runs.new, repo, parent, `step:${n}`)) === 'finished') break;
      steps = n;
      if (existsSync(repo)) assert.ok(same(snapshot(repo), reference.fresh), `step ${n}: a partial repository`);
    }
    assert.ok(steps >= 4, `${steps} steps killed`);
    rmSync(parent, { recursive: true, force: true });
    mkdirSync(parent);
    assert.equal(await child(runs.new, repo, parent, `step:${steps}`), 'killed');
    assert.ok(!existsSync(repo) && readdirSync(parent).length === 1, 'a kill at the last step leaves the finished temp folder beside, no repository');
    await child(runs.new, repo, parent);
    assert.ok(same(snapshot(repo), reference.fresh));
    assert.deepEqual(readdirSync(parent), ['models']);
  });

  test('temp folders the previous writer left inside the repository are swept, and a folder it had moved aside comes back', async () => {
    const parent = join(base, 'legacy');
    const repo = join(parent, 'models');
    rmSync(parent, { recursive: true, force: true });
    mkdirSync(parent);
    exportCheckpoint(runs.old, { triton: { dir: repo }, exportedAt: EXPORTED_AT });
    // What the earlier writer left when killed between moving a folder aside and moving the new one in.
    const { renameSync, cpSync } = await import('node:fs');
    renameSync(join(repo, 'capsnet'), join(repo, '.tmp-999999-1-old-capsnet'));
    cpSync(join(repo, 'capsnet_decoder'), join(repo, '.tmp-999999-2-capsnet_decoder'), { recursive: true });
    await child(runs.new, repo, parent);
    assert.deepEqual(readdirSync(repo).sort(), FOLDERS);
    assert.ok(same(snapshot(repo), reference.replaced));
  });
});
