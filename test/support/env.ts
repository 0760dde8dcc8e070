/**
 * The `CAPSNET_*` environment variables of the test suite: the one place under test/ that reads them, each with its
 * default (docs/environment.md lists them; test/unit/repo/env.test.ts keeps both in step).
 */

/** Every variable the tests read: its default when unset or empty (undefined: none) and what it does. */
export const VARIABLES = {
  CAPSNET_KEEP_APPS: { default: undefined, meaning: 'any value: test/consumers.test.ts keeps the apps it installed (and prints their folders)' },
  CAPSNET_KEEP_README_CLONE: { default: undefined, meaning: 'any value: test/readme-commands.test.ts keeps its clean clone (and prints its folder)' },
  CAPSNET_SKIP_WEBGPU: { default: undefined, meaning: "any value: test/serve-page.test.ts skips the page's switch to WebGPU (SwiftShader)" },
  CAPSNET_SERVE_MODEL: { default: undefined, meaning: 'an exported model.onnx: the serve tests run on it instead of the model they train' },
  CAPSNET_FAULT_SEED: {
    default: undefined,
    meaning: 'test/faults.test.ts: the seed of its random kill points (unset: from the clock; a failure prints the seed)',
  },
  CAPSNET_FAULT: {
    default: undefined,
    meaning: 'set by test/faults.test.ts for its child (test/support/fault-child.ts): which write or step to die in, as KIND:N',
  },
} as const satisfies Record<string, { default: string | undefined; meaning: string }>;

/** The variable's value, or its default when unset or empty. */
export function readEnv(name: keyof typeof VARIABLES): string | undefined {
  const value = process.env[name];
  return value === undefined || value === '' ? VARIABLES[name].default : value;
}
