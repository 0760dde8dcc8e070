/**
 * Which execution provider ONNX Runtime assigns each node to. ORT (1.30) logs this at verbose severity when a
 * session initialises (session_state.cc, VerifyEachNodeIsAssignedToAnEp), in one of two forms:
 *
 *   ... VerifyEachNodeIsAssignedToAnEp] Node placements
 *   ... VerifyEachNodeIsAssignedToAnEp]  All nodes placed on [WebGpuExecutionProvider]. Number of nodes: 81
 * or
 *   ... VerifyEachNodeIsAssignedToAnEp]  Node(s) placed on [CPUExecutionProvider]. Number of nodes: 1
 *   ... VerifyEachNodeIsAssignedToAnEp]   Equal (Equal)
 *   ... VerifyEachNodeIsAssignedToAnEp]  Node(s) placed on [WebGpuExecutionProvider]. Number of nodes: 6
 *   ... VerifyEachNodeIsAssignedToAnEp]   Cast (Cast)
 *   ...
 *
 * `probePlacement` opens a model in a child process (export/ep-probe.mjs) so the log can be captured from its
 * stderr, and parses it with `parseNodePlacements`.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export interface PlacedNode {
  opType: string;
  name: string;
}

export interface ProviderPlacement {
  provider: string;
  count: number;
  /** The nodes, when ORT lists them (it does not when every node is on one provider). */
  nodes: PlacedNode[];
}

/** The node placement blocks of an ORT verbose log (one per session; the last one wins). */
export function parseNodePlacements(log: string): ProviderPlacement[] | null {
  let result: ProviderPlacement[] | null = null;
  let current: ProviderPlacement | null = null;
  for (const line of log.split(/\r?\n/)) {
    const marker = line.indexOf('VerifyEachNodeIsAssignedToAnEp]');
    if (marker < 0) {
      continue;
    }
    const text = line.slice(marker + 'VerifyEachNodeIsAssignedToAnEp]'.length);
    if (/^\s*Node placements\s*$/.test(text)) {
      result = [];
      current = null;
      continue;
    }
    if (!result) continue;
    const all = /^\s*All nodes placed on \[([^\]]+)\]\. Number of nodes: (\d+)/.exec(text);
    if (all) {
      result.push({ provider: all[1]!, count: Number(all[2]), nodes: [] });
      current = null;
      continue;
    }
    const some = /^\s*Node\(s\) placed on \[([^\]]+)\]\. Number of nodes: (\d+)/.exec(text);
    if (some) {
      current = { provider: some[1]!, count: Number(some[2]), nodes: [] };
      result.push(current);
      continue;
    }
    const node = /^\s{2,}(\S+) \((.*)\)\s*$/.exec(text);
    if (node && current) current.nodes.push({ opType: node[1]!, name: node[2]! });
  }
  return result;
}

/** Copies between host and device memory that ORT inserts itself; not compute. */
export const MEMCPY_OPS = new Set(['MemcpyToHost', 'MemcpyFromHost']);

/** Compute nodes (Memcpy excluded) that ORT placed on the CPU provider. */
export function cpuComputeNodes(placements: ProviderPlacement[]): PlacedNode[] {
  const cpu = placements.filter((p) => p.provider === 'CPUExecutionProvider');
  const listed = cpu.flatMap((p) => p.nodes).filter((n) => !MEMCPY_OPS.has(n.opType));
  const unlisted = cpu.filter((p) => p.nodes.length === 0 && p.count > 0);
  return [...listed, ...unlisted.map((p) => ({ opType: '?', name: `${p.count} unlisted node(s)` }))];
}

/**
 * Environment for ORT's WebGPU provider (Dawn over Vulkan) on a machine without a GPU: SwiftShader's software
 * Vulkan from Debian's chromium package. chromium also ships the Vulkan loader (libvulkan.so.1) in its own
 * directory, which Dawn needs when the system has no libvulkan1, so that directory goes on LD_LIBRARY_PATH.
 */
export const SWIFTSHADER_ICD = '/usr/lib/chromium/vk_swiftshader_icd.json';

export function webgpuEnv(base: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...base, XDG_RUNTIME_DIR: base.XDG_RUNTIME_DIR ?? '/tmp' };
  if (!base.VK_ICD_FILENAMES && existsSync(SWIFTSHADER_ICD)) env.VK_ICD_FILENAMES = SWIFTSHADER_ICD;
  if (existsSync('/usr/lib/chromium/libvulkan.so.1')) {
    env.LD_LIBRARY_PATH = ['/usr/lib/chromium', base.LD_LIBRARY_PATH].filter(Boolean).join(':');
  }
  return env;
}

export interface ProbeResult {
  ok: boolean;
  error?: string;
  /** Output name -> dims. */
  outputs?: Record<string, number[]>;
  /** Output name -> its first (up to) 64 values. */
  values?: Record<string, number[]>;
  placements: ProviderPlacement[] | null;
  log: string;
  exitCode: number | null;
  seconds: number;
}

/** Open `modelPath` on `ep` in a child process, run it once on `dims`, and report where ORT put each node. */
export function probePlacement(
  modelPath: string,
  options: { ep: string; input: string; dims: number[]; env?: NodeJS.ProcessEnv; timeoutMs?: number },
): Promise<ProbeResult> {
  const script = fileURLToPath(new URL('./ep-probe.mjs', import.meta.url));
  const started = performance.now();
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [script, modelPath, options.ep, options.input, options.dims.join(',')], {
      env: options.env ?? process.env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 120_000);
    child.on('close', (code) => {
      clearTimeout(timer);
      const line = stdout.split('\n').find((l) => l.startsWith('PROBE '));
      let parsed: { ok: boolean; error?: string; outputs?: Record<string, number[]>; values?: Record<string, number[]> } = {
        ok: false,
        error: code === null ? `timed out after ${options.timeoutMs ?? 120_000} ms` : `probe exited with ${code} and no result`,
      };
      if (line) parsed = JSON.parse(line.slice('PROBE '.length)) as typeof parsed;
      resolve({ ...parsed, placements: parseNodePlacements(stderr), log: stderr, exitCode: code, seconds: (performance.now() - started) / 1000 });
    });
  });
}
