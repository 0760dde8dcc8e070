#!/usr/bin/env node
// The `capsnet` command. An installed package runs its compiled JavaScript (dist/). A source checkout, where
// src/ sits beside this file, runs the TypeScript through tsx instead, with the workspace packages
// (@capsnet-onnx/core, @capsnet-onnx/runtime) resolved to their sources by the `capsnet-source` export condition.
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { constants } from 'node:os';
import { fileURLToPath } from 'node:url';

// Two reasons to run the command in a child process, with this one only relaying stdio, signals and the exit code:
// - onnxruntime-node 1.30 segfaults when the process's command line is longer than about 32 KB, even once
//   process.argv is cut (it reads /proc/self/cmdline). So past ARGV_LIMIT bytes of arguments the child gets a short
//   command line and reads its arguments, as JSON, on stdin. A `-` argument (read file names from stdin) is
//   expanded here first, since stdin then carries the arguments.
// - A source checkout needs the `capsnet-source` condition from the process's start: worker threads (the image
//   decoders of `serve`, tfjs's pool) and child processes (parity's workers) resolve modules with the conditions
//   their process started with, and a loader hook registered at run time does not reach them. So the child starts
//   with it in NODE_OPTIONS, which worker threads and child processes inherit.
const ARGV_LIMIT = 16 * 1024;
const FROM_STDIN = 'CAPSNET_ARGV_FROM_STDIN';
const SOURCE_CONDITION = '--conditions=capsnet-source';
const source = new URL('../src/cli/main.ts', import.meta.url);
const fromSource = existsSync(source);
const hasSourceCondition = [...process.execArgv, ...(process.env.NODE_OPTIONS ?? '').split(/\s+/)].includes(SOURCE_CONDITION);

// Run by npx (npm exec), this process sits under `sh -c` under npm, and a SIGTERM to npx ends npm and the shell but
// not this process: `serve` would go on as an orphan. So when npx's shell goes away, act as if the SIGTERM had come
// here (serve then finishes its in-flight requests and exits). Only under npx: a server started with nohup or `&`
// is meant to outlive its shell.
if (process.env.npm_command === 'exec') {
  const parent = process.ppid;
  const watch = setInterval(() => {
    if (process.ppid === parent) return;
    clearInterval(watch);
    process.kill(process.pid, 'SIGTERM');
  }, 500);
  watch.unref();
}

// Measured on this process's own command line: a child that got its arguments on stdin never relays them again.
const longArgv = process.argv.reduce((n, a) => n + Buffer.byteLength(a) + 1, 0) > ARGV_LIMIT;
if (process.env[FROM_STDIN] === '1') {
  delete process.env[FROM_STDIN];
  process.argv = [process.argv[0], process.argv[1], ...JSON.parse(readFileSync(0, 'utf8'))];
}

if (longArgv || (fromSource && !hasSourceCondition)) {
  let args = process.argv.slice(2);
  const env = { ...process.env };
  if (fromSource && !hasSourceCondition) env.NODE_OPTIONS = `${env.NODE_OPTIONS ?? ''} ${SOURCE_CONDITION}`.trim();
  if (longArgv) {
    if (args.includes('-')) {
      const names = readFileSync(0, 'utf8')
        .split('\n')
        .map((l) => l.trim())
        .filter(Boolean);
      args = args.flatMap((a) => (a === '-' ? names : [a]));
    }
    env[FROM_STDIN] = '1';
  }
  const child = spawn(process.execPath, [...process.execArgv, fileURLToPath(import.meta.url), ...(longArgv ? [] : args)], {
    stdio: [longArgv ? 'pipe' : 'inherit', 'inherit', 'inherit'],
    env,
  });
  if (longArgv) child.stdin.end(JSON.stringify(args));
  // Ctrl-C in a terminal reaches the whole foreground process group, the child included: relaying it too would
  // make one Ctrl-C two (and a second Ctrl-C quits `train` without saving). Any other SIGINT is relayed.
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
    process.on(signal, () => {
      if (signal === 'SIGINT' && process.stdin.isTTY) return;
      child.kill(signal);
    });
  }
  child.on('exit', (code, signal) => process.exit(signal ? 128 + (constants.signals[signal] ?? 0) : (code ?? 1)));
} else if (fromSource) {
  const { register: registerTsx } = await import('tsx/esm/api');
  registerTsx();
  await import(source.href);
} else {
  await import('../dist/cli/main.js');
}
