/**
 * Checkpoints and exports are durable, not only atomic (issue 19): each temp file is fsynced before it is renamed
 * into place, and its directory after, so a power loss cannot leave a renamed but empty file. Checked on the real
 * system calls with strace (`-y` prints the path behind each descriptor) while a tiny CapsNet trains (checkpoints,
 * metrics) and exports (model + decoder).
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { after, describe, test } from 'node:test';
import { execa } from 'execa';
import { ROOT } from '../support/fixtures.ts';

const CHILD = join(ROOT, 'test', 'support', 'fault-child.ts');

function straceMissing(): string | undefined {
  try {
    execFileSync('strace', ['-V'], { stdio: 'ignore' });
    return undefined;
  } catch {
    return 'strace is not installed (apt-get install strace; .ci/run installs it)';
  }
}

interface Renamed {
  from: string;
  to: string;
  line: number;
}

/** The renames of temp files, and which paths were fsynced at which line, from `strace -f -y` output. */
function parse(log: string): { renames: Renamed[]; fsyncs: { path: string; line: number }[] } {
  const renames: Renamed[] = [];
  const fsyncs: { path: string; line: number }[] = [];
  log.split('\n').forEach((text, line) => {
    const rename = /rename(?:at2?)?\((?:[^,]*, )?"([^"]+)", (?:[^,]*, )?"([^"]+)"/.exec(text);
    if (rename && rename[1]!.includes('.tmp-') && / = 0$/.test(text.trim())) renames.push({ from: rename[1]!, to: rename[2]!, line });
    const fsync = /f(?:data)?sync\(\d+<([^>]+)>\)\s+= 0/.exec(text);
    if (fsync) fsyncs.push({ path: fsync[1]!, line });
  });
  return { renames, fsyncs };
}

describe('durable writes (fsync before rename, directory after)', { skip: straceMissing() }, () => {
  const work = mkdtempSync(join(tmpdir(), 'capsnet-durable-'));
  after(() => rmSync(work, { recursive: true, force: true }));

  for (const [what, args] of [
    // Resumed, so that metrics.jsonl is rewritten from the checkpoint (a new run has none until its first epoch ends).
    ['train (checkpoints, metrics.jsonl)', ['train', join(work, 'run'), '2']],
    ['export (model and decoder)', ['export', join(work, 'run'), join(work, 'model.onnx')]],
    ['export --triton (a new repository, moved in whole)', ['triton', join(work, 'run'), join(work, 'models')]],
  ] as const) {
    test(what, async () => {
      const log = join(work, `${args[0]}.strace`);
      if (args[0] === 'train')
        await execa(process.execPath, ['--import', 'tsx', CHILD, 'train', join(work, 'run'), '1'], { cwd: ROOT, env: { FAULT_BACKEND: 'cpu' } });
      await execa(
        'strace',
        ['-f', '-y', '-qq', '-e', 'trace=fsync,fdatasync,rename,renameat,renameat2', '-o', log, process.execPath, '--import', 'tsx', CHILD, ...args],
        { cwd: ROOT, env: { FAULT_BACKEND: 'cpu' } },
      );
      const { renames, fsyncs } = parse(readFileSync(log, 'utf8'));
      const targets = renames.map((r) => basename(r.to));
      if (args[0] === 'train') assert.ok(targets.includes('checkpoint.bin') && targets.includes('metrics.jsonl'), `renamed: ${targets.join(', ')}`);
      else if (args[0] === 'triton') assert.deepEqual(targets, ['models']);
      else assert.deepEqual(new Set(targets), new Set(['model.onnx', 'model.decoder.onnx']));
      for (const r of renames) {
        assert.ok(
          fsyncs.some((f) => f.path === r.from && f.line < r.line),
          `${r.from} was renamed to ${r.to} without an fsync first`,
        );
        assert.ok(
          fsyncs.some((f) => f.path === dirname(r.to) && f.line > r.line),
          `${dirname(r.to)} was not fsynced after ${basename(r.to)} was renamed into it`,
        );
      }
    });
  }
});
