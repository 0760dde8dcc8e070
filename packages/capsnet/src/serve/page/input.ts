/**
 * The page's inputs: the drawing pad (pointer strokes on a 280x280 canvas, white on black) and the strip of real
 * test digits from GET /v1/samples. app.ts turns them into the model's input.
 */
import type { Sample, SampleSet } from '../api.ts';
import { byId, context2d, el, paint } from './dom.ts';

export function pad() {
  const canvas = byId<HTMLCanvasElement>('pad');
  return { canvas, ctx: context2d(canvas, { willReadFrequently: true }) };
}

export function clearPad(): void {
  const { canvas, ctx } = pad();
  ctx.fillStyle = '#000';
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  canvas.parentElement?.classList.remove('has-ink');
}

/** Drawing with the pointer: `onStart` when a stroke begins, `onStroke` as it moves and when it ends. */
export function setupPad(onStart: () => void, onStroke: () => void): void {
  const { canvas, ctx } = pad();
  let drawing = false;
  let last: [number, number] | null = null;
  const point = (event: PointerEvent): [number, number] => {
    const rect = canvas.getBoundingClientRect();
    return [((event.clientX - rect.left) * canvas.width) / rect.width, ((event.clientY - rect.top) * canvas.height) / rect.height];
  };
  const strokeTo = (p: [number, number]) => {
    ctx.strokeStyle = '#fff';
    ctx.fillStyle = '#fff';
    ctx.lineWidth = Number(byId<HTMLInputElement>('brush').value);
    ctx.lineCap = 'round';
    ctx.lineJoin = 'round';
    ctx.beginPath();
    if (last) {
      ctx.moveTo(last[0], last[1]);
      ctx.lineTo(p[0], p[1]);
      ctx.stroke();
    } else {
      ctx.arc(p[0], p[1], ctx.lineWidth / 2, 0, 2 * Math.PI);
      ctx.fill();
    }
    last = p;
  };
  canvas.addEventListener('pointerdown', (event) => {
    event.preventDefault();
    canvas.setPointerCapture(event.pointerId);
    drawing = true;
    last = null;
    canvas.parentElement?.classList.add('has-ink');
    strokeTo(point(event));
    onStart();
  });
  canvas.addEventListener('pointermove', (event) => {
    if (!drawing) return;
    for (const e of event.getCoalescedEvents?.() ?? [event]) strokeTo(point(e));
    onStroke();
  });
  const endStroke = () => {
    if (!drawing) return;
    drawing = false;
    last = null;
    onStroke();
  };
  canvas.addEventListener('pointerup', endStroke);
  canvas.addEventListener('pointercancel', endStroke);
}

export function selectSample(button: HTMLButtonElement | null): void {
  for (const b of Array.from(byId('samples').querySelectorAll('button'))) b.classList.toggle('selected', b === button);
}

/** Fill the strip with the server's test digits; a click draws the digit on the pad and calls `onPick`. */
export async function loadSamples(onPick: (sample: Sample) => void): Promise<void> {
  const response = await fetch('/v1/samples');
  const set = (await response.json()) as SampleSet;
  const box = byId('samples');
  const [h, w, c] = set.shape;
  if (!set.samples.length) {
    box.replaceWith(el('p', { className: 'muted small' }, set.note ?? 'no test images available'));
    return;
  }
  for (const sample of set.samples) {
    const title = `test image #${sample.index}: ${sample.labelName}`;
    const button = el('button', { type: 'button', title, 'data-label': sample.label, 'data-index': sample.index });
    const canvas = el('canvas');
    paint(canvas, sample.pixels, h, w, c);
    button.append(canvas);
    button.addEventListener('click', () => {
      selectSample(button);
      clearPad();
      const { canvas: padCanvas, ctx } = pad();
      ctx.imageSmoothingEnabled = true;
      ctx.imageSmoothingQuality = 'high';
      ctx.drawImage(canvas, 0, 0, padCanvas.width, padCanvas.height);
      padCanvas.parentElement?.classList.add('has-ink');
      onPick(sample);
    });
    box.append(button);
  }
}
