#!/usr/bin/env node
// The `capsnet` command. An installed package runs its compiled JavaScript (dist/). A source checkout, where
// src/ sits beside this file, runs the TypeScript through tsx instead, with the workspace packages
// (@capsnet-onnx/core, @capsnet-onnx/runtime) resolved to their sources by the `capsnet-source` export condition.
import { existsSync } from 'node:fs';

const source = new URL('../src/cli/main.ts', import.meta.url);
if (existsSync(source)) {
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
