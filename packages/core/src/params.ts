/** The CapsNet's weights by name and shape: one table for the trainer, the checkpoint and the ONNX exporter. */
import { type CapsNetConfig, derivedSizes } from './config.ts';

/** Whether the config asks for the authors' code's learned DigitCaps bias. */
export function hasDigitBias(config: CapsNetConfig): boolean {
  return config.digitCapsBias !== undefined && config.digitCapsBias !== null;
}

/** Weight shapes, by name. The checkpoint and the ONNX exporter use the same names. */
export function paramShapes(config: CapsNetConfig): Record<string, number[]> {
  const { numPrimaryCaps, pixels } = derivedSizes(config);
  const primaryChannels = config.primaryMaps * config.primaryDim;
  const shapes: Record<string, number[]> = {
    'conv1/kernel': [config.conv1Kernel, config.conv1Kernel, config.inputChannels, config.conv1Filters],
    'conv1/bias': [config.conv1Filters],
    'primary/kernel': [config.primaryKernel, config.primaryKernel, config.conv1Filters, primaryChannels],
    'primary/bias': [primaryChannels],
    // W_ij of eq. 2, stored once for all examples: [input capsule i, its 8-D pose, (class j, 16-D pose)].
    'digit/W': [numPrimaryCaps, config.primaryDim, config.numClasses * config.digitDim],
  };
  // The authors' code's DigitCaps bias (config.digitCapsBias); the paper has none.
  if (hasDigitBias(config)) shapes['digit/bias'] = [config.numClasses, config.digitDim];
  const widths = [config.numClasses * config.digitDim, ...config.decoderHidden, pixels];
  for (let layer = 0; layer + 1 < widths.length; layer++) {
    shapes[`decoder/dense${layer}/kernel`] = [widths[layer]!, widths[layer + 1]!];
    shapes[`decoder/dense${layer}/bias`] = [widths[layer + 1]!];
  }
  return shapes;
}

/** CapsNet parameters; without the decoder when `withDecoder` is false (Table 1's 6.8M vs 8.2M). */
export function capsnetParameterCount(config: CapsNetConfig, withDecoder = true): number {
  return Object.entries(paramShapes(config))
    .filter(([name]) => withDecoder || !name.startsWith('decoder/'))
    .reduce((n, [, shape]) => n + shape.reduce((a, b) => a * b, 1), 0);
}
