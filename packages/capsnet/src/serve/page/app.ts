/**
 * The demo page (bundled by web/build.ts into dist/web/page.js, served at /web/page.js): draw, open or pick a digit,
 * classify it in the browser with the runtime's onnxruntime-web build, show the capsule lengths, the
 * reconstruction, 16 sliders that perturb the winning capsule (perturb.ts), the routing coefficients as a heat map
 * (routing.ts) and the paper's figure 4 for the current digit. The server only serves files and metadata; the
 * types of its answers come from serve/api.ts.
 *
 * - A digit drawn (or picked, or opened) while the model loads is classified as soon as the model is there.
 * - A device switch loads the new model beside the working one and swaps only once it runs: a failed switch (no
 *   WebGPU adapter, a failed download) keeps the working model and says so. Loaded models are kept for switching back.
 * - Every model run (classify, decode, routing) goes through one queue: onnxruntime-web runs one at a time.
 *
 * This bundle is also onnxruntime-web's pthread worker script: the top level only defines things, and main() runs
 * only in a window.
 */
import { type Classification, type Classifier, type DeviceRequest, decodeImage, prepareImage } from '@capsnet-onnx/runtime/web';
import type { ModelInfo } from '../api.ts';
import { byId, el, fmtMs, paint, setBadge, showError } from './dom.ts';
import { clearPad, loadSamples, pad, selectSample, setupPad } from './input.ts';
import { type Loaded, deviceName, exclusive, loadModelOn, message } from './models.ts';
import { type Figure4, buildSliders, figure4, labelSliders, labelsNote, maskedCapsule, renderFigure4, resetSliders, showEffects } from './perturb.ts';
import { type CouplingMap, RoutingSession, renderRouting } from './routing.ts';
import type { PageState } from './state.ts';

const state: PageState = {
  info: null,
  model: null,
  device: 'auto',
  loading: false,
  busy: 0,
  classifyCount: 0,
  decodeCount: 0,
  analysisCount: 0,
  input: null,
  inputInk: false,
  inputSource: '',
  result: null,
  deltas: new Float32Array(16),
  timings: { load: Number.NaN, classify: Number.NaN, decode: Number.NaN, analysis: Number.NaN },
  routingSession: null,
  coupling: null,
  routingClass: null,
  routing: null,
  figure: null,
};

const info = () => state.info!;
const inputShape = () => {
  const [, h, w, c] = info().input.shape;
  return { h, w, c, size: h * w * c };
};

/** A picture as the model's input through the shared pipeline (MNIST's normalisation for digit models); null when blank. */
function toInput(picture: Parameters<typeof prepareImage>[0]): Float32Array | null {
  const { h, w, c } = inputShape();
  const prepared = prepareImage(picture, { height: h, width: w, channels: c }, info().metadata.preprocessing, { polarity: 'auto' });
  return prepared.ink ? prepared.pixels : null;
}

function showLatency(): void {
  const t = state.timings;
  byId('latency').textContent =
    `load + warm-up ${fmtMs(t.load)} · classify ${fmtMs(t.classify)} · decode ${fmtMs(t.decode)} · routing + figure 4 ${fmtMs(t.analysis)}`;
}

// ---- classify, decode, routing and figure 4 ----------------------------------------------------------------

let classifyPending: string | null = null;
let classifyRunning = false;

/**
 * Classify the current input soon; calls made while one runs coalesce into one more run with the latest input.
 * Before the model is loaded the request waits: loadModel() runs it.
 */
function scheduleClassify(source: string): void {
  classifyPending = source;
  if (!classifyRunning) void runClassify();
}

async function runClassify(): Promise<void> {
  if (!state.model || !state.info) return;
  classifyRunning = true;
  state.busy++;
  try {
    while (classifyPending !== null && state.model) {
      const source = classifyPending;
      classifyPending = null;
      const { h, w, c, size } = inputShape();
      if (source === 'drawing') {
        // A blank pad (cleared, or ink too faint) is still classified: the answer is "no digit".
        const { canvas, ctx } = pad();
        const drawn = toInput(ctx.getImageData(0, 0, canvas.width, canvas.height));
        state.input = drawn ?? new Float32Array(size);
        state.inputInk = drawn !== null;
        state.inputSource = 'your drawing, centred like MNIST';
      }
      const input = state.input;
      if (!input) continue;
      paint(byId<HTMLCanvasElement>('model-input'), input, h, w, c);
      byId('input-source').textContent = state.inputSource;
      const model: Classifier = state.model;
      const started = performance.now();
      const [result] = await exclusive(() => model.classify(input));
      if (model !== state.model) {
        classifyPending ??= source === 'drawing' ? 'drawing' : 'input'; // switched meanwhile: again on the new model
        continue;
      }
      state.timings.classify = performance.now() - started;
      state.classifyCount++;
      state.result = result ?? null;
      state.routingClass = null;
      state.deltas.fill(0);
      renderResult();
      showLatency();
    }
    scheduleAnalysis();
  } catch (e) {
    showError(`classify failed: ${message(e)}`);
  } finally {
    classifyRunning = false;
    state.busy--;
  }
}

let decodePending = false;
let decodeRunning = false;

function scheduleDecode(): void {
  decodePending = true;
  if (!decodeRunning) void runDecode();
}

async function runDecode(): Promise<void> {
  decodeRunning = true;
  state.busy++;
  try {
    while (decodePending && state.model && state.result) {
      decodePending = false;
      const { numClasses, digitDim, inputHeight, inputWidth, inputChannels } = info().metadata;
      const model: Classifier = state.model;
      const result: Classification = state.result;
      const masked = maskedCapsule(result.capsules, result.longest, digitDim, numClasses, state.deltas);
      const started = performance.now();
      const [reconstruction] = await exclusive(() => model.decode(masked));
      state.timings.decode = performance.now() - started;
      state.decodeCount++;
      paint(byId<HTMLCanvasElement>('recon'), reconstruction!, inputHeight, inputWidth, inputChannels);
      showLatency();
    }
  } catch (e) {
    showError(`decode failed: ${message(e)}`);
  } finally {
    decodeRunning = false;
    state.busy--;
  }
}

let analysisPending = false;
let analysisRunning = false;

/** Routing and figure 4 of the latest result, once classification has settled (they cost a few runs each). */
function scheduleAnalysis(): void {
  analysisPending = true;
  if (!analysisRunning) void runAnalysis();
}

async function runAnalysis(): Promise<void> {
  analysisRunning = true;
  state.busy++;
  try {
    while (analysisPending && classifyPending === null) {
      analysisPending = false;
      const { model, result, input, routingSession } = state;
      if (!model || !result || !input || !state.inputInk) {
        showAnalysis(null, null, 'draw, open or pick a digit');
        continue;
      }
      const m = info().metadata;
      const started = performance.now();
      const coupling = routingSession instanceof RoutingSession ? await exclusive(() => routingSession.run(input)) : null;
      const figure = await figure4((sets) => exclusive(() => model.decode(sets)), result.capsules, result.longest, m);
      if (state.result !== result) continue; // a newer result schedules its own
      state.timings.analysis = performance.now() - started;
      showAnalysis(coupling, figure, typeof routingSession === 'string' ? routingSession : 'loading the routing session');
      state.analysisCount++;
      showLatency();
    }
  } catch (e) {
    showError(`routing / figure 4 failed: ${message(e)}`);
  } finally {
    analysisRunning = false;
    state.busy--;
  }
}

/** Show (or clear, with a note) the routing heat map, figure 4 and the sliders' effects. */
function showAnalysis(coupling: CouplingMap[] | null, figure: Figure4 | null, note: string): void {
  state.coupling = coupling;
  state.figure = figure;
  const m = info().metadata;
  if (figure) renderFigure4(byId('fig4-box'), figure, m);
  else byId('fig4-box').replaceChildren(el('p', { className: 'muted small' }, note));
  showEffects(byId('sliders'), figure?.effects ?? null);
  renderRoutingView(note);
}

function renderRoutingView(note = 'draw, open or pick a digit'): void {
  const box = byId('routing');
  const { coupling, result, input } = state;
  if (!coupling || !result || !input) {
    state.routing = typeof state.routingSession === 'string' ? state.routingSession : null;
    box.replaceChildren(
      el('p', { className: 'muted small' }, typeof state.routingSession === 'string' ? `Routing is not shown: ${state.routingSession}` : note),
    );
    return;
  }
  state.routing = renderRouting(box, coupling, input, info().metadata, state.routingClass ?? result.longest);
  if (typeof state.routing === 'string') box.replaceChildren(el('p', { className: 'muted small' }, `Routing is not shown: ${state.routing}`));
  for (const li of Array.from(byId('bars').children))
    li.classList.toggle('routed', Number((li as HTMLElement).dataset.class) === (state.routingClass ?? result.longest));
}

// ---- rendering -------------------------------------------------------------------------------------------

function buildBars(): void {
  const bars = byId('bars');
  bars.replaceChildren();
  info().metadata.classLabels.forEach((name, k) => {
    const li = el(
      'li',
      { 'data-class': k, title: 'show the routing to this class' },
      el('span', { className: 'name' }, name),
      el('span', { className: 'track' }, el('span', { className: 'fill' })),
      el('span', { className: 'value' }, '–'),
    );
    // Click a class to see the routing to it (again: back to the winning class).
    li.addEventListener('click', () => {
      state.routingClass = state.routingClass === k ? null : k;
      renderRoutingView();
    });
    bars.append(li);
  });
}

function renderResult(): void {
  const result = state.result;
  const { inputHeight: h, inputWidth: w, inputChannels: c } = info().metadata;
  const prediction = byId('prediction');
  // A null label is an answer: no ink, or no capsule long enough (the model's presence threshold).
  prediction.textContent = result ? (result.label === null ? 'no digit' : (result.labelName ?? String(result.label))) : '–';
  prediction.title = result?.reason ?? '';
  byId('reason').textContent = result?.reason ?? '';
  for (const li of Array.from(byId('bars').children)) {
    const k = Number((li as HTMLElement).dataset.class);
    const length = result ? (result.lengths[k] ?? 0) : 0;
    li.classList.toggle('win', result !== null && k === result.label);
    (li.querySelector('.fill') as HTMLElement).style.width = `${Math.min(100, 100 * length)}%`;
    li.querySelector('.value')!.textContent = result ? length.toFixed(3) : '–';
  }
  resetSliders(byId('sliders'), state.deltas);
  labelSliders(byId('sliders'), info().dimensions ?? null, result ? result.longest : null);
  byId('sliders').classList.toggle('disabled', !result);
  const blank = new Float32Array(h * w * c);
  paint(byId<HTMLCanvasElement>('recon'), result ? result.reconstruction : blank, h, w, c);
  if (!result) {
    paint(byId<HTMLCanvasElement>('model-input'), blank, h, w, c);
    byId('input-source').textContent = '';
    showAnalysis(null, null, 'draw, open or pick a digit');
  }
}

// ---- the model -------------------------------------------------------------------------------------------

function checkDevice(device: DeviceRequest): void {
  const radio = byId('provider').querySelector<HTMLInputElement>(`input[value="${device}"]`);
  if (radio) radio.checked = true;
}

/**
 * Every model the page loaded, by device request, reused when the user switches back. The page never releases a
 * model it switched away from: in onnxruntime-web 1.30 a session created before its WebGPU backend started (the
 * wasm model a page loads first) counts down, when released, a session count it never counted up; at 0 the
 * backend destroys its buffer cache under the live WebGPU session, whose next run fails with "no GPU data for
 * input". At most three (auto, webgpu, wasm).
 */
const loadedModels = new Map<DeviceRequest, Loaded>();
let loadGeneration = 0;

/** Make `entry` the working model, and classify whatever was drawn, opened or picked meanwhile. */
function activate(entry: Loaded, device: DeviceRequest): void {
  state.model = entry.model;
  state.routingSession = entry.routing;
  state.device = device;
  state.timings.load = entry.loadMs;
  setBadge(entry.badge);
  byId('device-badge').title = entry.model.deviceReport;
  checkDevice(device);
  showLatency();
  if (classifyPending !== null) void runClassify();
  else if (state.input) scheduleClassify('input');
}

/**
 * Switch to the model on `device` (loaded beside the working one, or the one loaded before); a failure keeps the
 * working model and its device selected. A newer call supersedes an unfinished one.
 */
async function loadModel(device: DeviceRequest): Promise<void> {
  const generation = ++loadGeneration;
  const known = loadedModels.get(device);
  if (known) {
    state.loading = false;
    showError('');
    activate(known, device);
    return;
  }
  state.loading = true;
  setBadge(`loading ${device}…`, 'busy');
  showError('');
  try {
    const entry = await loadModelOn(device, info().metadata);
    loadedModels.set(device, entry);
    if (generation === loadGeneration) activate(entry, device);
  } catch (e) {
    if (generation !== loadGeneration) return;
    const working = state.model;
    if (working) {
      setBadge(loadedModels.get(state.device)?.badge ?? deviceName(working));
      checkDevice(state.device);
      showError(`could not load the model on ${device}: ${message(e)}; still running on ${deviceName(working)}`);
    } else {
      setBadge(`${device} failed`, 'failed');
      showError(`could not load the model on ${device}: ${message(e)}`);
    }
  } finally {
    if (generation === loadGeneration) state.loading = false;
  }
}

async function main(): Promise<void> {
  window.capsnet = state;
  clearPad();
  setupPad(
    () => selectSample(null),
    () => scheduleClassify('drawing'),
  );
  byId('clear').addEventListener('click', () => {
    clearPad();
    selectSample(null);
    classifyPending = null;
    state.input = null;
    state.inputInk = false;
    state.result = null;
    if (state.info) renderResult();
  });
  byId('reset').addEventListener('click', () => {
    resetSliders(byId('sliders'), state.deltas);
    scheduleDecode();
  });
  // An image file (PNG or JPEG: a scan, a photo, a canvas export) through the same pipeline as the server's.
  byId<HTMLInputElement>('file').addEventListener('change', async (event) => {
    const target = event.target as HTMLInputElement;
    const file = target.files?.[0];
    target.value = '';
    if (!file) return;
    try {
      if (!state.info) throw new Error('the model information has not loaded yet: open the file again in a moment');
      const picture = decodeImage(new Uint8Array(await file.arrayBuffer()), undefined, file.name);
      clearPad();
      selectSample(null);
      const input = toInput(picture);
      state.input = input ?? new Float32Array(inputShape().size);
      state.inputInk = input !== null;
      state.inputSource = `${file.name} (${picture.width}×${picture.height})`;
      showError('');
      scheduleClassify('file');
    } catch (e) {
      showError(message(e));
    }
  });

  const response = await fetch('/v1/model');
  if (!response.ok) throw new Error(`GET /v1/model: HTTP ${response.status}`);
  state.info = (await response.json()) as ModelInfo;
  const m = state.info.metadata;
  const accuracy = m.testAccuracy == null ? '' : ` · test accuracy ${(100 * m.testAccuracy).toFixed(2)}%`;
  byId('model-info').textContent =
    `${m.dataset} · ${m.inputHeight}×${m.inputWidth}×${m.inputChannels} input · ${m.numClasses} classes · ` +
    `${m.routingIterations} routing iterations${accuracy}`;
  buildBars();
  state.deltas = buildSliders(byId('sliders'), m.digitDim, scheduleDecode);
  byId('dims-note').textContent = labelsNote(state.info.dimensions ?? null);
  renderResult();

  const provider = byId('provider');
  const webgpu = provider.querySelector<HTMLInputElement>('input[value=webgpu]')!;
  if (!('gpu' in navigator)) {
    webgpu.disabled = true;
    if (webgpu.parentElement) webgpu.parentElement.title = 'this browser has no WebGPU';
  }
  const requested = new URLSearchParams(location.search).get('device');
  const initial: DeviceRequest = requested === 'wasm' || (requested === 'webgpu' && !webgpu.disabled) ? requested : 'auto';
  checkDevice(initial);
  provider.addEventListener('change', (event) => void loadModel((event.target as HTMLInputElement).value as DeviceRequest));

  await Promise.all([
    loadModel(initial),
    loadSamples((sample) => {
      state.input = Float32Array.from(sample.pixels);
      state.inputInk = true;
      state.inputSource = `test image #${sample.index} (${sample.labelName})`;
      scheduleClassify('sample');
    }).catch((e) => showError(`test digits: ${message(e)}`)),
  ]);
}

if (typeof window !== 'undefined' && typeof document !== 'undefined') {
  main().catch((e) => {
    setBadge('failed', 'failed');
    showError(message(e));
  });
}
