/** onnx.checker (Debian's python3-onnx) through scripts/check_onnx.py: an independent validator of exported files. */
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { ROOT } from './fixtures.ts';

const PYTHON = '/usr/bin/python3';
const CHECKER = join(ROOT, 'scripts', 'check_onnx.py');

/** Why the checker cannot run here, or null when it can. */
export function pythonOnnxAvailable(): string | null {
  try {
    execFileSync(PYTHON, ['-c', 'import onnx'], { stdio: 'pipe' });
    return null;
  } catch (e) {
    return `${PYTHON} cannot import onnx (${(e as Error).message.split('\n')[0]}): install python3-onnx`;
  }
}

export function runChecker(...files: string[]): { ok: boolean; error: string | null; ir_version: number; opset: [string, number][] }[] {
  try {
    return execFileSync(PYTHON, [CHECKER, ...files], { encoding: 'utf8' })
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
  } catch (e) {
    const out = (e as { stdout?: string }).stdout ?? '';
    return out
      .trim()
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l));
  }
}

/** Node name -> the element type onnx's strict shape inference gives its first output (e.g. 'FLOAT16'), after the full check passed. */
export function inferredNodeTypes(file: string): Record<string, string> {
  const out = execFileSync(PYTHON, [CHECKER, '--node-types', file], { encoding: 'utf8' }).trim();
  const result = JSON.parse(out) as { ok: boolean; error: string | null; node_types: Record<string, string> };
  if (!result.ok) throw new Error(`onnx.checker rejected ${file}: ${result.error}`);
  return result.node_types;
}
