/** SVG figures in tests: parsed as XML (a well-formedness error fails the test), with their size and marks. */
import { readFileSync } from 'node:fs';
import { DOMParser, type Document, type Element } from '@xmldom/xmldom';

export function parseSvg(text: string): Document {
  const doc = new DOMParser({
    onError: (level, message) => {
      if (level !== 'warning') throw new Error(`not well-formed XML (${level}): ${message}`);
    },
  }).parseFromString(text, 'image/svg+xml');
  if (doc.documentElement?.tagName !== 'svg') throw new Error(`the root element is <${doc.documentElement?.tagName}>, not <svg>`);
  return doc;
}

/** Elements named `tag` whose class attribute includes `className` (e.g. vega's `mark-line`, `role-axis-title`). */
export function byClass(doc: Document, tag: string, className: string): Element[] {
  return Array.from(doc.getElementsByTagName(tag)).filter((e) => (e.getAttribute('class') ?? '').split(/\s+/).includes(className));
}

/** The text of every <text> element under `root`, in document order. */
export function texts(root: Document | Element): string[] {
  return Array.from(root.getElementsByTagName('text')).map((t) => t.textContent ?? '');
}

export function svgInfo(path: string) {
  const doc = parseSvg(readFileSync(path, 'utf8'));
  const root = doc.documentElement!;
  return {
    doc,
    width: Number(root.getAttribute('width')),
    height: Number(root.getAttribute('height')),
    images: doc.getElementsByTagName('image').length,
    texts: texts(doc),
  };
}
