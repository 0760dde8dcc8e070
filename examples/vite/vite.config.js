// onnxruntime-web's module finds its .wasm with new URL(file, import.meta.url): Vite emits it; nothing to copy.
export default { build: { outDir: 'dist', target: 'es2022' }, logLevel: 'warn' };
