/** onnxruntime-node, CPU execution provider: always available in Node. */
import type { Provider } from './provider.ts';
import { errorMessage, threadCount } from './provider.ts';

export const nodeCpu: Provider = {
  device: 'cpu',
  runtime: 'onnxruntime-node',
  // ORT's CPU provider has fp16 kernels for few ops on x86 (its InsertCastTransformer widens the rest).
  fp16Compute: 'widened',
  async unavailable() {
    return null;
  },
  sessionOptions(options) {
    const threads = threadCount(options.threads);
    return {
      executionProviders: [{ name: 'cpu' }],
      graphOptimizationLevel: 'all',
      ...(threads ? { intraOpNumThreads: threads } : {}),
    };
  },
  explainFailure(error) {
    return errorMessage(error);
  },
};
