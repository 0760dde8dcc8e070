/**
 * @capsnet-onnx/core: what every layer shares, with no TensorFlow.js and no ONNX Runtime, safe in Node and the
 * browser. The training config and its presets (paper section 4), the routing algorithms (routing.ts), the weights' names and shapes, the ONNX file
 * format (I/O names, metadata keys, metadata parsing, the decoder's path), a seeded RNG, FLOP counts, errors, and
 * the one image pipeline (decode.ts: PNG/JPEG with size limits; image.ts: alpha, polarity, MNIST normalisation).
 */
export * from './config.ts';
export * from './routing.ts';
export * from './params.ts';
export * from './baseline-cnn.ts';
export * from './format.ts';
export * from './onnx-metadata.ts';
export * from './errors.ts';
export * from './rng.ts';
export * from './flops.ts';
export * from './decode.ts';
export { loadJpegDecoder } from './jpeg.ts';
export * from './image-source.ts';
export * from './image.ts';
export * from './resample.ts';
export * from './dimensions.ts';
