/**
 * `import … from 'capsnet-onnx'`: the toolchain as a library for Node scripts, kept light (no TensorFlow.js,
 * no server, no browser): the runtime's Node API (`CapsNet.load`, the `Classifier` contract, errors, metadata),
 * re-exported so one package serves both, plus the exporter (checkpoint -> model.onnx + model.decoder.onnx) and
 * the model inspector. Training, serving and parity are the `capsnet` command's. Apps that only run a model should
 * depend on `@capsnet-onnx/runtime` instead: it does not pull in the toolchain's dependencies.
 */
export * from '@capsnet-onnx/runtime/node';
export { exportCheckpoint, type ExportOptions, type ExportResult } from '../export/exporter.ts';
export { OutputExistsError } from '../files/atomic.ts';
export { inspectFile, formatSummary, type ModelSummary } from '../export/inspect.ts';
