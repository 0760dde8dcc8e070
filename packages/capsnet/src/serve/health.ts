/**
 * The probe inference and `GET /healthz`. At start, a model that cannot run or whose outputs disagree with its
 * metadata is refused (instead of answering every request with a 500 later). /healthz is answered outside the
 * inference queue: a probe runs at most once a second, and while inference is busy (a run in flight or requests
 * queued) the answer is the last finished probe's, never a wait behind the queue. When idle it waits for a fresh
 * probe, so a model that just broke is reported at once.
 */
import type { FastifyInstance } from 'fastify';
import type { Classification, Classifier } from '@capsnet-onnx/runtime';
import { withoutPaths } from './errors.ts';
import type { ImagePool } from './image-pool.ts';
import type { Inference } from './inference.ts';

/**
 * A probe inference: a blank image through the classifier (and a blank capsule set through the decoder) whose
 * outputs must have the shapes and ranges the metadata promises. Throws a one-line error naming the mismatch.
 */
export async function probeClassifier(classifier: Classifier): Promise<void> {
  const m = classifier.metadata;
  const pixels = m.inputHeight * m.inputWidth * m.inputChannels;
  const fail = (problem: string): never => {
    throw new Error(`the model does not match its metadata: ${problem}; re-export it with \`capsnet export\``);
  };
  let result: Classification | undefined;
  try {
    [result] = await classifier.classify(new Float32Array(pixels));
  } catch (e) {
    fail(`a probe inference failed (${withoutPaths((e as Error).message)})`);
  }
  // The class of the longest capsule (a blank probe answers label null, by design).
  const { lengths, capsules, reconstruction, longest: label } = result!;
  if (lengths.length !== m.numClasses) fail(`it computes ${lengths.length} class scores, its metadata says ${m.numClasses} classes`);
  if (capsules.length !== m.numClasses * m.digitDim) fail(`its capsules hold ${capsules.length} values, not ${m.numClasses} x ${m.digitDim}`);
  if (reconstruction.length !== pixels) fail(`its reconstruction has ${reconstruction.length} pixels, not ${pixels}`);
  if (!lengths.every((v) => Number.isFinite(v) && v >= 0 && v <= 1 + 1e-5)) fail('its capsule lengths are not all in [0, 1]');
  if (!(label >= 0 && label < m.classLabels.length)) fail(`it predicts class ${label}, outside its ${m.classLabels.length} labels`);
  try {
    const [decoded] = await classifier.decode(new Float32Array(m.numClasses * m.digitDim));
    if (decoded!.length !== pixels) fail(`its decoder returns ${decoded!.length} pixels, not ${pixels}`);
  } catch (e) {
    if (!/no decoder model/.test((e as Error).message)) fail(`a probe of its decoder failed (${withoutPaths((e as Error).message)})`);
  }
}

export interface HealthOptions {
  classifier: Classifier;
  inference: Inference;
  images: ImagePool;
  closing: () => boolean;
}

/** `GET /healthz` (register without a prefix). */
export async function healthRoute(app: FastifyInstance, options: HealthOptions): Promise<void> {
  const { classifier, inference, images } = options;
  const startedAt = Date.now();
  let lastProbe: string | null = null; // the start-up probe passed
  let health = { at: Date.now(), check: Promise.resolve<string | null>(null), done: true };
  const healthCheck = (): Promise<string | null> | string | null => {
    if (Date.now() - health.at > 1000) {
      const probe = { at: Date.now(), check: Promise.resolve<string | null>(null), done: false };
      probe.check = probeClassifier(classifier)
        .then(
          () => null,
          (e: Error) => e.message,
        )
        .then((problem) => {
          probe.done = true;
          lastProbe = problem;
          return problem;
        });
      health = probe;
    }
    if (!health.done && inference.busy()) return lastProbe;
    return health.check;
  };

  app.get('/healthz', async (_request, reply) => {
    if (options.closing()) return reply.code(503).send({ status: 'shutting-down' });
    const problem = await healthCheck();
    if (problem) return reply.code(503).send({ status: 'unhealthy', device: classifier.device, error: { code: 'MODEL_PROBE_FAILED', message: problem } });
    const { classify, decode } = inference.stats();
    return {
      status: 'ok',
      device: classifier.device,
      uptimeS: Math.round((Date.now() - startedAt) / 1000),
      inference: { queued: classify.queued + decode.queued, running: classify.inFlight || decode.inFlight },
      images: images.stats(),
    };
  });
}
