/**
 * The page's DOM helpers. The page builds no HTML from strings: every element comes from document.createElement
 * and every piece of data (class labels, data set names, notes, error messages) goes in as a text node, so model
 * metadata can never become markup (test/e2e/serve-page-hostile.test.ts). Nothing here runs at import: the bundle is
 * also onnxruntime-web's pthread worker script, where there is no document.
 */

/** The element with this id, typed by the caller; a missing one is a bug in index.html, said by name. */
export function byId<T extends HTMLElement = HTMLElement>(id: string): T {
  const node = document.getElementById(id);
  if (!node) throw new Error(`the page has no #${id} element`);
  return node as T;
}

type Child = Node | string;

/** An element with attributes (className sets the class) and children; strings become text nodes. */
export function el<K extends keyof HTMLElementTagNameMap>(tag: K, props: Record<string, string | number> = {}, ...children: Child[]): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === 'className') node.className = String(value);
    else node.setAttribute(key, String(value));
  }
  node.append(...children);
  return node;
}

export function showError(message: string): void {
  const box = byId('error');
  box.textContent = message;
  box.hidden = !message;
}

export function setBadge(text: string, kind = ''): void {
  const badge = byId('device-badge');
  badge.textContent = text;
  badge.className = `badge ${kind}`;
}

export function fmtMs(ms: number): string {
  return Number.isFinite(ms) ? `${ms < 10 ? ms.toFixed(1) : Math.round(ms)} ms` : '–';
}

export function context2d(canvas: HTMLCanvasElement, options?: CanvasRenderingContext2DSettings): CanvasRenderingContext2D {
  const ctx = canvas.getContext('2d', options);
  if (!ctx) throw new Error('this browser gives no 2D canvas context');
  return ctx;
}

/** H*W*C pixels in [0, 1] as RGBA bytes (gray for one channel). */
export function rgba(pixels: ArrayLike<number>, h: number, w: number, c: number): ImageData {
  const image = new ImageData(w, h);
  for (let p = 0; p < h * w; p++) {
    for (let k = 0; k < 3; k++) image.data[4 * p + k] = Math.round(255 * Math.min(1, Math.max(0, pixels[p * c + (c === 1 ? 0 : k)] ?? 0)));
    image.data[4 * p + 3] = 255;
  }
  return image;
}

/** Draw H*W*C pixels in [0, 1] onto a canvas of that size. */
export function paint(canvas: HTMLCanvasElement, pixels: ArrayLike<number>, h: number, w: number, c: number): void {
  canvas.width = w;
  canvas.height = h;
  context2d(canvas).putImageData(rgba(pixels, h, w, c), 0, 0);
}
