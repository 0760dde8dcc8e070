/**
 * The PyTorch reference scripts (scripts/bench_train_torch.py, bench/train_epoch_torch.py) read the project's
 * CapsNetConfig as JSON. CI does not install PyTorch, so a renamed config field would only show as a "skipped" row
 * in `npm run bench:train`: this test reads the scripts' config accesses and checks them against the presets.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { PRESET_NAMES, presetConfig } from '@capsnet-onnx/core';
import { ROOT } from '../../support/fixtures.ts';

const SCRIPTS = ['scripts/bench_train_torch.py', 'bench/train_epoch_torch.py'];

/** Top-level keys read as c["key"], config["key"], c.get("key") or config.get("key"). */
function configKeys(source: string): string[] {
  const keys = new Set<string>();
  for (const m of source.matchAll(/\b(?:c|config)(?:\[|\.get\()"([A-Za-z0-9_]+)"/g)) keys.add(m[1]!);
  return [...keys].sort();
}

test('every CapsNetConfig field the PyTorch reference reads exists in each preset', () => {
  for (const script of SCRIPTS) {
    const keys = configKeys(readFileSync(join(ROOT, script), 'utf8'));
    assert.ok(keys.length >= (script.startsWith('scripts/') ? 10 : 3), `${script}: found only ${keys.join(', ')}; has the way it reads the config changed?`);
    for (const preset of PRESET_NAMES) {
      const config = presetConfig(preset) as unknown as Record<string, unknown>;
      const missing = keys.filter((k) => !(k in config) && k !== 'maxShift');
      assert.deepEqual(missing, [], `${script} reads ${missing.join(', ')}, which the ${preset} preset's config does not have`);
    }
  }
});

test('the routing the PyTorch reference runs is the config routing entry (algorithm and iterations)', () => {
  const source = readFileSync(join(ROOT, 'scripts/bench_train_torch.py'), 'utf8');
  assert.match(source, /routing\.get\("algorithm"\)/);
  assert.match(source, /routing\["iterations"\]/);
  for (const preset of PRESET_NAMES) {
    const { routing } = presetConfig(preset);
    assert.equal(routing.algorithm, 'dynamic');
    assert.ok(Number.isInteger(routing.iterations) && routing.iterations >= 1);
  }
});
