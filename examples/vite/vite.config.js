// onnxruntime-web's module finds its .wasm with new URL(file, import.meta.url): Vite emits it; nothing to copy.
// @capsnet-onnx/mnist finds its model files the same way, which the dev server's dependency pre-bundling breaks
// (it moves the module into node_modules/.vite/deps/): `vite build` needs nothing, `vite` (dev) needs the exclude.
export default { build: { outDir: 'dist', target: 'es2022' }, optimizeDeps: { exclude: ['@capsnet-onnx/mnist'] }, logLevel: 'warn' };
