/** onnxruntime-node, CPU execution provider: always available in Node. */
import { defineProvider, errorMessage, threadCount } from './provider.ts';

export const nodeCpu = defineProvider('node-cpu', {
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
});

export default nodeCpu;
