#!/usr/bin/env node
// The `capsnet` command. An installed package runs its compiled JavaScript (dist/). A source checkout, where
// src/ sits beside this file, runs the TypeScript through tsx instead, with the workspace packages
// (@capsnet-onnx/core, @capsnet-onnx/runtime) resolved to their sources by the `capsnet-source` export condition.
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { constants } from 'node:os';
import { fileURLToPath } from 'node:url';

// onnxruntime-node 1.30 segfaults when the process's command line is longer than about 32 KB, even once
// process.argv is cut (it reads /proc/self/cmdline). So past ARGV_LIMIT bytes of arguments this process only
// relays: the command runs in a child with a short command line that reads its arguments, as JSON, on stdin.
// A `-` argument (read file names from stdin) is expanded here first, since stdin then carries the arguments.
const ARGV_LIMIT = 16 * 1024;
const FROM_STDIN = 'CAPSNET_ARGV_FROM_STDIN';
const argvBytes = process.argv.reduce((n, a) => n + Buffer.byteLength(a) + 1, 0);
const relay = process.env[FROM_STDIN] !== '1' && argvBytes > ARGV_LIMIT;
if (process.env[FROM_STDIN] === '1') {
  delete process.env[FROM_STDIN];
  process.argv = [process.argv[0], process.argv[1], ...JSON.parse(readFileSync(0, 'utf8'))];
}

const source = new URL('../src/cli/main.ts', import.meta.url);
if (relay) {
  let args = process.argv.slice(2);
  if (args.includes('-')) {
    const names = readFileSync(0, 'utf8').split('\n').map((l) => l.trim()).filter(Boolean);
    args = args.flatMap((a) => (a === '-' ? names : [a]));
  }
  const child = spawn(process.execPath, [...process.execArgv, fileURLToPath(import.meta.url)], {
    stdio: ['pipe', 'inherit', 'inherit'],
    env: { ...process.env, [FROM_STDIN]: '1' },
  });
  child.stdin.end(JSON.stringify(args));
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(signal, () => child.kill(signal));
  child.on('exit', (code, signal) => process.exit(signal ? 128 + (constants.signals[signal] ?? 0) : (code ?? 1)));
} else if (existsSync(source)) {
  const { register } = await import('node:module');
  const addSourceCondition =
    'export async function resolve(specifier, context, next) {' +
    " return next(specifier, { ...context, conditions: [...context.conditions, 'capsnet-source'] }); }";
  register(`data:text/javascript,${encodeURIComponent(addSourceCondition)}`);
  // Child processes (parity workers, the serve process in tests) resolve the same way.
  if (!(process.env.NODE_OPTIONS ?? '').includes('--conditions=capsnet-source')) {
    process.env.NODE_OPTIONS = `${process.env.NODE_OPTIONS ?? ''} --conditions=capsnet-source`.trim();
  }
  const { register: registerTsx } = await import('tsx/esm/api');
  registerTsx();
  await import(source.href);
} else {
  await import('../dist/cli/main.js');
}
