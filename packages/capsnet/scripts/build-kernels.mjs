// Compiles the AssemblyScript training kernels (assembly/training-kernels.ts) to the two wasm binaries that
// train/backends/wasm-capsule-kernels.ts loads: one importing a shared memory (tfjs-backend-wasm's multi-threaded build)
// and one importing a plain memory (its single-threaded build). The binaries are committed, so that installing
// or running the toolchain never needs the compiler; test/e2e/wasm-capsule-kernels.test.ts rebuilds them in memory and
// requires the committed files to be byte-identical to what this source compiles to.
//
//   npm run build:kernels            # rewrite src/train/backends/kernels/*.wasm from assembly/
//
// --shrinkLevel 1 keeps AssemblyScript's Math.exp off its lookup table: the module must have no data segment,
// because it shares tfjs's heap and a segment would be written over tfjs's own data at instantiation.
import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
export const KERNEL_SOURCE = `${root}assembly/training-kernels.ts`;
export const KERNEL_BINARIES = {
  plain: `${root}src/train/backends/kernels/training-kernels.wasm`,
  shared: `${root}src/train/backends/kernels/training-kernels-shared.wasm`,
};

const COMMON = [
  '--optimizeLevel',
  '3',
  '--shrinkLevel',
  '1',
  '--runtime',
  'stub',
  '--noAssert',
  '--enable',
  'simd',
  '--importMemory',
  '--noExportMemory',
  '--initialMemory',
  '1',
];
// A shared memory must declare a maximum, and an imported memory's own maximum may not exceed it: 65536 pages
// (4 GiB, the most wasm32 addresses) accepts any. The plain build declares none, which accepts any memory too.
const VARIANTS = { plain: [], shared: ['--sharedMemory', '--maximumMemory', '65536', '--enable', 'threads'] };

/** Compiles one variant and returns the wasm bytes (throws with the compiler's messages on an error). */
export async function compileKernels(variant) {
  const { default: asc } = await import('assemblyscript/asc');
  let binary = null;
  const stderr = [];
  const { error } = await asc.main([KERNEL_SOURCE, ...COMMON, ...VARIANTS[variant], '--outFile', 'kernels.wasm'], {
    writeFile: (name, contents) => {
      if (name.endsWith('.wasm')) binary = contents;
    },
    stdout: { write: () => true },
    stderr: {
      write: (s) => {
        stderr.push(String(s));
        return true;
      },
    },
  });
  if (error || binary == null) throw new Error(`assemblyscript failed on ${KERNEL_SOURCE}: ${error?.message ?? ''}\n${stderr.join('')}`);
  return binary;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  for (const variant of Object.keys(VARIANTS)) {
    const bytes = await compileKernels(variant);
    const out = KERNEL_BINARIES[variant];
    mkdirSync(`${root}src/train/backends/kernels`, { recursive: true });
    writeFileSync(`${out}.tmp`, bytes);
    renameSync(`${out}.tmp`, out);
    console.log(`${out}: ${bytes.length} bytes`);
  }
}
