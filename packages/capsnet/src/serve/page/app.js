// The demo page: draw or pick a digit, classify it in the browser with the runtime's onnxruntime-web bundle
// (dist/web/capsnet.js, served at /web/), show the capsule lengths and the reconstruction, and perturb the
// winning capsule with 16 sliders that re-run the decoder live. The server only serves files and metadata.
/** The runtime's browser bundle (`npm run build:web`), imported in main() so a missing bundle is reported. */
let CapsNet;
let describeAdapter;
let webGpuAdapterInfo;
/** The one image pipeline (core/image.ts, core/decode.ts), the same the CLI and the server run. */
let prepareImage;
let decodeImage;

const $ = (id) => /** @type {any} */ (document.getElementById(id));
const SLIDER_MIN = -0.25;
const SLIDER_MAX = 0.25;
const SLIDER_STEP = 0.05;

const state = {
  /** @type {any} */ info: null,
  /** @type {any} */ model: null,
  device: 'auto',
  loading: false,
  busy: 0,
  classifyCount: 0,
  decodeCount: 0,
  /** @type {Float32Array | null} */ input: null,
  inputSource: '',
  /** @type {any} */ result: null,
  /** @type {Float32Array} */ deltas: new Float32Array(16),
  timings: { load: NaN, classify: NaN, decode: NaN },
};
// Read by the end-to-end test (and handy in the console).
window.capsnet = state;

// ---- small helpers ---------------------------------------------------------------------------------------

function showError(message) {
  const el = $('error');
  el.textContent = message;
  el.hidden = !message;
}

function setBadge(text, kind = '') {
  const badge = $('device-badge');
  badge.textContent = text;
  badge.className = `badge ${kind}`;
}

function fmtMs(ms) {
  return Number.isFinite(ms) ? `${ms < 10 ? ms.toFixed(1) : Math.round(ms)} ms` : '–';
}

function showLatency() {
  const t = state.timings;
  $('latency').textContent = `load + warm-up ${fmtMs(t.load)} · classify ${fmtMs(t.classify)} · decode ${fmtMs(t.decode)}`;
}

/** Draw H*W*C pixels in [0,1] onto a canvas of that size. */
function paint(canvas, pixels, h, w, c) {
  canvas.width = w;
  canvas.height = h;
  const ctx = canvas.getContext('2d');
  const image = ctx.createImageData(w, h);
  for (let p = 0; p < h * w; p++) {
    for (let k = 0; k < 3; k++) image.data[4 * p + k] = Math.round(255 * Math.min(1, Math.max(0, pixels[p * c + (c === 1 ? 0 : k)])));
    image.data[4 * p + 3] = 255;
  }
  ctx.putImageData(image, 0, 0);
}

// ---- the drawing pad --------------------------------------------------------------------------------------

const pad = $('pad');
const padCtx = pad.getContext('2d', { willReadFrequently: true });

function clearPad() {
  padCtx.fillStyle = '#000';
  padCtx.fillRect(0, 0, pad.width, pad.height);
  pad.parentElement.classList.remove('has-ink');
}

/** Pixels (an ImageData or a decoded file) as the model's input, through the shared pipeline; null when blank. */
function toInput(picture) {
  const [H, W, C] = state.info.input.shape.slice(1);
  const prepared = prepareImage(picture, { height: H, width: W, channels: C }, state.info.metadata.preprocessing, { polarity: 'auto' });
  return prepared.ink ? prepared.pixels : null;
}

/** The pad as the model's input: MNIST's normalisation (crop, 20 px, centre of mass) for digit models. */
function padToInput() {
  return toInput(padCtx.getImageData(0, 0, pad.width, pad.height));
}

let drawing = false;
let last = null;

function padPoint(event) {
  const rect = pad.getBoundingClientRect();
  return [((event.clientX - rect.left) * pad.width) / rect.width, ((event.clientY - rect.top) * pad.height) / rect.height];
}

function strokeTo(point) {
  padCtx.strokeStyle = '#fff';
  padCtx.fillStyle = '#fff';
  padCtx.lineWidth = Number($('brush').value);
  padCtx.lineCap = 'round';
  padCtx.lineJoin = 'round';
  padCtx.beginPath();
  if (last) {
    padCtx.moveTo(last[0], last[1]);
    padCtx.lineTo(point[0], point[1]);
    padCtx.stroke();
  } else {
    padCtx.arc(point[0], point[1], padCtx.lineWidth / 2, 0, 2 * Math.PI);
    padCtx.fill();
  }
  last = point;
}

pad.addEventListener('pointerdown', (event) => {
  event.preventDefault();
  pad.setPointerCapture(event.pointerId);
  drawing = true;
  last = null;
  pad.parentElement.classList.add('has-ink');
  strokeTo(padPoint(event));
  selectSample(null);
});
pad.addEventListener('pointermove', (event) => {
  if (!drawing) return;
  for (const e of event.getCoalescedEvents?.() ?? [event]) strokeTo(padPoint(e));
  scheduleClassify('drawing');
});
const endStroke = () => {
  if (!drawing) return;
  drawing = false;
  last = null;
  scheduleClassify('drawing');
};
pad.addEventListener('pointerup', endStroke);
pad.addEventListener('pointercancel', endStroke);

$('clear').addEventListener('click', () => {
  clearPad();
  selectSample(null);
  state.input = null;
  state.result = null;
  renderResult();
});

// An image file (PNG or JPEG: a scan, a photo, a canvas export) through the same pipeline as the server's.
$('file').addEventListener('change', async (event) => {
  const file = event.target.files?.[0];
  event.target.value = '';
  if (!file) return;
  try {
    const picture = decodeImage(new Uint8Array(await file.arrayBuffer()), undefined, file.name);
    clearPad();
    selectSample(null);
    state.input = toInput(picture) ?? new Float32Array(state.info.input.shape.slice(1).reduce((a, b) => a * b, 1));
    state.inputSource = `${file.name} (${picture.width}×${picture.height})`;
    showError('');
    scheduleClassify('file');
  } catch (e) {
    showError(e.message);
  }
});

// ---- classify and decode -----------------------------------------------------------------------------------

let classifyPending = null;
let classifyRunning = false;

/** Classify the current input soon; calls made while one runs coalesce into one more run with the latest input. */
function scheduleClassify(source) {
  classifyPending = source;
  if (!classifyRunning) void runClassify();
}

async function runClassify() {
  if (!state.model) return;
  classifyRunning = true;
  state.busy++;
  try {
    while (classifyPending !== null && state.model) {
      const source = classifyPending;
      classifyPending = null;
      if (source === 'drawing') {
        // A blank pad (cleared, or ink too faint) is still classified: the answer is "no digit".
        const [H, W, C] = state.info.input.shape.slice(1);
        state.input = padToInput() ?? new Float32Array(H * W * C);
        state.inputSource = 'your drawing, centred like MNIST';
      }
      if (!state.input) continue;
      const [H, W, C] = state.info.input.shape.slice(1);
      paint($('model-input'), state.input, H, W, C);
      $('input-source').textContent = state.inputSource;
      const model = state.model;
      const started = performance.now();
      const [result] = await model.classify(state.input);
      if (model !== state.model) continue;
      state.timings.classify = performance.now() - started;
      state.classifyCount++;
      state.result = result;
      state.deltas.fill(0);
      renderResult();
      showLatency();
    }
  } catch (e) {
    showError(`classify failed: ${e.message}`);
  } finally {
    classifyRunning = false;
    state.busy--;
  }
}

let decodePending = false;
let decodeRunning = false;

function scheduleDecode() {
  decodePending = true;
  if (!decodeRunning) void runDecode();
}

async function runDecode() {
  decodeRunning = true;
  state.busy++;
  try {
    while (decodePending && state.model && state.result) {
      decodePending = false;
      const { numClasses, digitDim, inputHeight, inputWidth, inputChannels } = state.info.metadata;
      const { longest: label, capsules } = state.result;
      const masked = new Float32Array(numClasses * digitDim);
      for (let d = 0; d < digitDim; d++) masked[label * digitDim + d] = capsules[label * digitDim + d] + state.deltas[d];
      const started = performance.now();
      const [reconstruction] = await state.model.decode(masked);
      state.timings.decode = performance.now() - started;
      state.decodeCount++;
      paint($('recon'), reconstruction, inputHeight, inputWidth, inputChannels);
      showLatency();
    }
  } catch (e) {
    showError(`decode failed: ${e.message}`);
  } finally {
    decodeRunning = false;
    state.busy--;
  }
}

// ---- rendering -------------------------------------------------------------------------------------------

/**
 * The page builds no HTML from strings: every element comes from document.createElement and every piece of
 * data (class labels, data set names, notes) goes in as a text node, so model metadata can never become markup.
 */
function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === 'className') node.className = value;
    else node.setAttribute(key, String(value));
  }
  node.append(...children);
  return node;
}

function buildBars() {
  const bars = $('bars');
  bars.replaceChildren();
  state.info.metadata.classLabels.forEach((name, k) => {
    const li = document.createElement('li');
    li.dataset.class = String(k);
    li.append(
      el('span', { className: 'name' }, name),
      el('span', { className: 'track' }, el('span', { className: 'fill' })),
      el('span', { className: 'value' }, '–'),
    );
    bars.append(li);
  });
}

function buildSliders() {
  const box = $('sliders');
  box.replaceChildren();
  const { digitDim } = state.info.metadata;
  state.deltas = new Float32Array(digitDim);
  for (let d = 0; d < digitDim; d++) {
    const row = document.createElement('label');
    row.className = 'slider';
    const input = el('input', {
      type: 'range',
      min: SLIDER_MIN,
      max: SLIDER_MAX,
      step: SLIDER_STEP,
      value: 0,
      'data-dim': d,
      'aria-label': `capsule dimension ${d + 1}`,
    });
    const output = el('output', {}, '0.00');
    row.append(el('span', { className: 'dim' }, String(d + 1)), input, output);
    input.addEventListener('input', () => {
      const value = Math.round(Number(input.value) / SLIDER_STEP) * SLIDER_STEP;
      state.deltas[d] = value;
      output.textContent = `${value > 0 ? '+' : ''}${value.toFixed(2)}`;
      output.classList.toggle('moved', value !== 0);
      scheduleDecode();
    });
    box.append(row);
  }
}

function resetSliders() {
  state.deltas.fill(0);
  for (const input of $('sliders').querySelectorAll('input')) input.value = '0';
  for (const output of $('sliders').querySelectorAll('output')) {
    output.textContent = '0.00';
    output.classList.remove('moved');
  }
}

$('reset').addEventListener('click', () => {
  resetSliders();
  scheduleDecode();
});

function renderResult() {
  const result = state.result;
  const { inputHeight, inputWidth, inputChannels } = state.info.metadata;
  // A null label is an answer: no ink, or no capsule long enough (the model's presence threshold).
  $('prediction').textContent = result ? (result.label === null ? 'no digit' : result.labelName) : '–';
  $('prediction').title = result?.reason ?? '';
  $('reason').textContent = result?.reason ?? '';
  for (const li of $('bars').children) {
    const k = Number(li.dataset.class);
    const length = result ? result.lengths[k] : 0;
    li.classList.toggle('win', Boolean(result) && k === result.label);
    li.querySelector('.fill').style.width = `${Math.min(100, 100 * length)}%`;
    li.querySelector('.value').textContent = result ? length.toFixed(3) : '–';
  }
  resetSliders();
  $('sliders').classList.toggle('disabled', !result);
  if (result) paint($('recon'), result.reconstruction, inputHeight, inputWidth, inputChannels);
  else {
    paint($('recon'), new Float32Array(inputHeight * inputWidth * inputChannels), inputHeight, inputWidth, inputChannels);
    paint($('model-input'), new Float32Array(inputHeight * inputWidth * inputChannels), inputHeight, inputWidth, inputChannels);
    $('input-source').textContent = '';
  }
}

// ---- test digits -----------------------------------------------------------------------------------------

function selectSample(button) {
  for (const b of $('samples').querySelectorAll('button')) b.classList.toggle('selected', b === button);
}

async function loadSamples() {
  const response = await fetch('/v1/samples');
  const set = await response.json();
  const box = $('samples');
  const [H, W, C] = set.shape;
  if (!set.samples.length) {
    box.replaceWith(el('p', { className: 'muted small' }, set.note ?? 'no test images available'));
    return;
  }
  for (const sample of set.samples) {
    const button = document.createElement('button');
    button.type = 'button';
    button.title = `test image #${sample.index}: ${sample.labelName}`;
    button.dataset.label = String(sample.label);
    button.dataset.index = String(sample.index);
    const canvas = document.createElement('canvas');
    paint(canvas, sample.pixels, H, W, C);
    button.append(canvas);
    button.addEventListener('click', () => {
      selectSample(button);
      clearPad();
      padCtx.imageSmoothingEnabled = true;
      padCtx.imageSmoothingQuality = 'high';
      padCtx.drawImage(canvas, 0, 0, pad.width, pad.height);
      pad.parentElement.classList.add('has-ink');
      state.input = Float32Array.from(sample.pixels);
      state.inputSource = `test image #${sample.index} (${sample.labelName})`;
      scheduleClassify('sample');
    });
    box.append(button);
  }
}

// ---- the model -------------------------------------------------------------------------------------------

async function loadModel(device) {
  state.device = device;
  state.loading = true;
  setBadge(`loading ${device}…`, 'busy');
  showError('');
  const previous = state.model;
  state.model = null;
  try {
    await previous?.dispose();
    const started = performance.now();
    const model = await CapsNet.load('/model.onnx', { device, decoder: '/model.decoder.onnx', wasmPaths: '/ort/' });
    // One warm-up run of each graph (WebGPU compiles its shaders here), so the latencies shown are steady-state.
    const m = state.info.metadata;
    await model.classify(new Float32Array(m.inputHeight * m.inputWidth * m.inputChannels));
    await model.decode(new Float32Array(m.numClasses * m.digitDim));
    state.timings.load = performance.now() - started;
    state.model = model;
    let detail = '';
    if (model.device === 'wasm') detail = self.crossOriginIsolated ? ' · threaded' : ' · 1 thread';
    else if (model.device === 'webgpu') {
      const adapter = await webGpuAdapterInfo();
      if (adapter) detail = ` · ${describeAdapter(adapter)}`;
    }
    setBadge(`${model.device === 'webgpu' ? 'WebGPU' : 'WASM'}${detail}`);
    $('device-badge').title = model.deviceReport;
    showLatency();
    if (state.input) scheduleClassify(state.inputSource.startsWith('your drawing') ? 'drawing' : 'input');
  } catch (e) {
    setBadge(`${device} failed`, 'failed');
    showError(`could not load the model on ${device}: ${e.message}`);
  } finally {
    state.loading = false;
  }
}

async function main() {
  clearPad();
  try {
    ({ CapsNet, describeAdapter, webGpuAdapterInfo, prepareImage, decodeImage } = await import('/web/capsnet.js'));
  } catch (e) {
    throw new Error(`the browser runtime /web/capsnet.js did not load (${e.message}): build it with \`npm run build:web\` and reload`);
  }
  const response = await fetch('/v1/model');
  if (!response.ok) throw new Error(`GET /v1/model: HTTP ${response.status}`);
  state.info = await response.json();
  const m = state.info.metadata;
  const accuracy = m.testAccuracy == null ? '' : ` · test accuracy ${(100 * m.testAccuracy).toFixed(2)}%`;
  $('model-info').textContent =
    `${m.dataset} · ${m.inputHeight}×${m.inputWidth}×${m.inputChannels} input · ${m.numClasses} classes · ` +
    `${m.routingIterations} routing iterations${accuracy}`;
  buildBars();
  buildSliders();
  renderResult();

  const webgpu = $('provider').querySelector('input[value=webgpu]');
  if (!('gpu' in navigator)) {
    webgpu.disabled = true;
    webgpu.parentElement.title = 'this browser has no WebGPU';
  }
  const requested = new URLSearchParams(location.search).get('device');
  const initial = requested === 'wasm' || (requested === 'webgpu' && !webgpu.disabled) ? requested : 'auto';
  $('provider').querySelector(`input[value=${initial}]`).checked = true;
  $('provider').addEventListener('change', (event) => void loadModel(event.target.value));

  await Promise.all([loadModel(initial), loadSamples().catch((e) => showError(`test digits: ${e.message}`))]);
}

main().catch((e) => {
  setBadge('failed', 'failed');
  showError(e.message);
});
