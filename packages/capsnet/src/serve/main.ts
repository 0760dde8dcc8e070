/** `capsnet serve` itself: load the model, start the server, and shut down gracefully on SIGTERM/SIGINT. */
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { readFile } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { type DimensionFindings, checkDimensionFindings, decoderPathFor } from '@capsnet-onnx/core';
import type { Classifier, DeviceRequest } from '@capsnet-onnx/runtime';
import { createServer } from './server.ts';
import { oneLine } from './errors.ts';
import { webBundles } from '../web/paths.ts';

export interface ServeCommandOptions {
  model: string;
  device: DeviceRequest;
  port: number;
  host: string;
  decoder?: string;
  threads?: number;
  maxBatch: number;
  batchWaitMs: number;
  maxQueue?: number;
  bodyLimit: number;
  shutdownTimeout: number;
  logRequests: boolean;
  presenceThreshold?: number;
  allowedHost?: string[];
  cors?: string;
  /** Name on the KServe v2 routes. */
  modelName?: string;
  /** Data spec whose test images the page offers (default: the model's data set when it is built in). */
  data?: string;
  /** dimensions.json of `capsnet experiment perturb`: what each capsule dimension does, for the page's sliders. */
  dimensions?: string;
}

/**
 * Read and check a dimensions file (against the model's capsules, when given).
 * @throws Error (one line, naming the file and the fix) when it is missing, not JSON, or not for this model
 */
export function readDimensions(file: string, model?: { digitDim: number; numClasses: number }): DimensionFindings {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new Error(
      `--dimensions ${file}: ${code === 'ENOENT' ? 'no such file' : `cannot read it (${code})`}: ` +
        'pass the dimensions.json that `capsnet experiment perturb` wrote',
    );
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new Error(`--dimensions ${file}: not JSON (${(e as Error).message}): pass the dimensions.json that \`capsnet experiment perturb\` wrote`);
  }
  return checkDimensionFindings(json, `--dimensions ${file}`, model);
}

/** The page's bundle (dist/web/page.js, with the runtime): shipped in the package, built on demand in the repository. */
async function ensureWebBundle(log: (line: string) => void): Promise<void> {
  try {
    const { dir } = await webBundles(false);
    // In the repository, bundles built before the page was one (capsnet.js without page.js) are rebuilt.
    if (!existsSync(join(dir, 'page.js')) && import.meta.url.endsWith('.ts')) await (await import('../web/build.ts')).buildWeb();
  } catch (e) {
    log(`the page at / needs the browser bundle (${(e as Error).message.split('\n')[0]}); the API works without it`);
  }
}

/**
 * A failed listen as one line naming the address and the fix, for the errors a user can cause with --host and
 * --port; anything else keeps the system's words, after the address.
 */
export function listenErrorMessage(error: NodeJS.ErrnoException, host: string, port: number): string {
  const where = `${host}:${port}`;
  switch (error.code) {
    case 'EADDRINUSE':
      return `port ${port} on ${host} is in use: pick another with --port (0: any free port)`;
    case 'EADDRNOTAVAIL':
      return `cannot listen on ${where}: ${host} is not an address of this machine: pass one of its own with --host, or 127.0.0.1 or 0.0.0.0 (every interface)`;
    case 'EACCES':
    case 'EPERM':
      if (port > 0 && port < 1024) {
        return `cannot listen on ${where}: ports below 1024 need administrator rights: pick a port from 1024 up with --port (e.g. 8080; 0: any free port)`;
      }
      return `cannot listen on ${where}: the system refuses this port (${error.code}): pick another with --port (0: any free port)`;
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
    case 'EAI_NONAME':
      return `cannot listen on ${where}: the host name ${host} does not resolve: pass an address with --host, e.g. 127.0.0.1 or 0.0.0.0`;
    case 'EAFNOSUPPORT':
      return `cannot listen on ${where}: this machine has no ${host.includes(':') ? 'IPv6' : 'IPv4'} support: pass --host 127.0.0.1 or ::1`;
    default:
      return `cannot listen on ${where} (${oneLine(error.message)}): check --host and --port`;
  }
}

export async function serve(opts: ServeCommandOptions): Promise<void> {
  const modelPath = resolve(opts.model);
  if (!existsSync(modelPath)) throw new Error(`model ${opts.model} not found: export one with \`capsnet export RUN_DIR -o model.onnx\``);
  const decoderPath = resolve(opts.decoder ?? decoderPathFor(opts.model));
  if (!existsSync(decoderPath)) {
    throw new Error(`decoder ${decoderPath} not found: \`capsnet export\` writes it beside the model, or pass --decoder FILE`);
  }
  // A mistyped --data is refused now, as `train` refuses it, not found by the page's first GET /v1/samples.
  if (opts.data) (await import('../data/datasets.ts')).checkDataSpec(opts.data);
  // A bad dimensions file is refused before the model loads; its capsules are checked against the model after.
  const dimensions = opts.dimensions ? readDimensions(opts.dimensions) : undefined;
  const log = (line: string) => console.log(`capsnet serve: ${line}`);
  await ensureWebBundle(log);
  // ONNX Runtime's CPU pool defaults to every core and spins between runs, starving the event loop that parses
  // and answers requests: leave it one core (on 2 cores this alone nearly doubles served throughput).
  const threads = opts.threads ?? Math.max(1, availableParallelism() - 1);
  const loadOptions = {
    device: opts.device,
    maxBatch: opts.maxBatch,
    threads,
    log,
    ...(opts.presenceThreshold !== undefined ? { presenceThreshold: opts.presenceThreshold } : {}),
  };
  // The files are read once: the classifier is loaded from these bytes and the page gets the same bytes
  // (serve/files.ts), whatever happens to the files on disk later.
  const [modelBytes, decoderBytes] = await Promise.all([readFile(modelPath), readFile(decoderPath)]);
  let classifier: Classifier;
  try {
    if (opts.device === 'wasm') {
      // onnxruntime-web's wasm build also runs in Node: the browser's CPU path, served here for comparison.
      const { CapsNet } = await import('@capsnet-onnx/runtime/web');
      classifier = await CapsNet.load(modelBytes, { ...loadOptions, decoder: decoderBytes });
    } else {
      const { CapsNet } = await import('@capsnet-onnx/runtime/node');
      classifier = await CapsNet.load(modelBytes, { ...loadOptions, decoder: decoderBytes });
    }
  } catch (e) {
    // Loaded from bytes, the runtime calls the file "the model": name it (the error keeps its class).
    if (e instanceof Error) e.message = `${opts.model}: ${e.message}`;
    throw e;
  }
  try {
    if (opts.dimensions && dimensions) checkDimensionFindings(dimensions, `--dimensions ${opts.dimensions}`, classifier.metadata);
  } catch (e) {
    await classifier.dispose();
    throw e;
  }
  const server = await createServer({
    ...(dimensions ? { dimensions } : {}),
    allowedHosts: opts.allowedHost,
    cors: opts.cors,
    classifier,
    modelPath,
    decoderPath,
    modelBytes,
    decoderBytes,
    maxBatch: opts.maxBatch,
    batchWaitMs: opts.batchWaitMs,
    maxQueue: opts.maxQueue,
    bodyLimit: opts.bodyLimit,
    logRequests: opts.logRequests,
    modelName: opts.modelName,
    ...(opts.data ? { samplesData: opts.data } : {}),
    log,
  }).catch(async (e: Error) => {
    await classifier.dispose();
    throw new Error(`${opts.model}: ${e.message}`);
  });
  let url: string;
  try {
    url = await server.listen(opts.port, opts.host);
  } catch (e) {
    await classifier.dispose();
    throw new Error(listenErrorMessage(e as NodeJS.ErrnoException, opts.host, opts.port));
  }
  const m = classifier.metadata;
  log(
    `listening on ${url} (device ` +
      `${classifier.device}${classifier.device === 'cpu' || classifier.device === 'wasm' ? `, ${threads} thread${threads === 1 ? '' : 's'}` : ''}; ` +
      `${m.inputHeight}x${m.inputWidth}x${m.inputChannels} -> ${m.numClasses} classes; ` +
      `batches of up to ${opts.maxBatch}, waiting up to ${opts.batchWaitMs} ms)`,
  );

  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    const { classify, decode } = server.stats();
    log(`${signal}: finishing in-flight requests (${classify.queued + decode.queued} queued), then exiting`);
    const force = setTimeout(() => {
      log(`in-flight requests did not finish within ${opts.shutdownTimeout} s; exiting anyway`);
      process.exit(1);
    }, opts.shutdownTimeout * 1000);
    force.unref();
    try {
      await server.close();
      await classifier.dispose();
      log('stopped');
      process.exit(0);
    } catch (e) {
      log(`shutdown failed: ${(e as Error).message}`);
      process.exit(1);
    }
  };
  // `on`, not `once`: a signal can arrive twice (Ctrl-C reaches both the `capsnet` launcher, which relays it, and
  // this process), and the second must not kill the server mid-shutdown; the shutdown timeout bounds the wait.
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGINT', () => void shutdown('SIGINT'));
}
