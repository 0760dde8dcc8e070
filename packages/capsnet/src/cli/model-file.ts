/**
 * The model argument of `serve` and `classify`, checked before a runtime reads it. Forgetting the model makes the
 * first image the "model" (`capsnet classify digit3.png digit7.png`), and ONNX Runtime's word for that is a protobuf
 * wire type, with no file named: these say what the file is instead, and how to give a model.
 */
import { closeSync, openSync, readSync, statSync } from 'node:fs';
import { extname } from 'node:path';
import { imageFormat } from '@capsnet-onnx/core';
import { PRETRAINED_CHOICES } from './pretrained.ts';

/** A model argument that is not a model (an image, a directory, a file that is not ONNX): `--json`'s NOT_A_MODEL. */
export class NotAModelError extends Error {
  override name = 'NotAModelError';
}

/** The fix every refusal ends with: a model file, or a pretrained model. */
const howToGiveOne = () => `give a model.onnx from \`capsnet export\` first, or use --pretrained ${PRETRAINED_CHOICES[0] ?? 'NAME'}`;

/** What the first bytes (and the name) say a file is, when it is an image rather than a model; null otherwise. */
function imageKind(head: Uint8Array, path: string): string | null {
  const format = imageFormat(head);
  if (format) return format === 'png' ? 'a PNG image' : 'a JPEG image';
  const magic = head.length >= 4 ? ((head[0]! << 24) | (head[1]! << 16) | (head[2]! << 8) | head[3]!) >>> 0 : -1;
  if (magic === 0x803) return 'an IDX image file';
  if (magic === 0x801) return 'an IDX labels file';
  const name = path.toLowerCase();
  if (/idx[13]-ubyte(\.gz)?$/.test(name)) return 'an IDX file';
  if (['.png', '.jpg', '.jpeg'].includes(extname(name))) return `an image (${extname(name)})`;
  return null;
}

/**
 * Refuse a model argument that is an image (PNG or JPEG by content or extension, IDX by content or name) or a
 * directory, in one line naming it and the fix. A path that does not exist is left to the loaders' own messages.
 * @throws Error naming the file, what it is, and how to give a model
 */
export function refuseNonModel(path: string): void {
  let isDirectory: boolean;
  try {
    isDirectory = statSync(path).isDirectory();
  } catch {
    return;
  }
  if (isDirectory) throw new NotAModelError(`${path} is a directory, not a model: ${howToGiveOne()}`);
  const head = new Uint8Array(8);
  let read = 0;
  try {
    const fd = openSync(path, 'r');
    try {
      read = readSync(fd, head, 0, head.length, 0);
    } finally {
      closeSync(fd);
    }
  } catch {
    return; // unreadable: the loader says why
  }
  const kind = imageKind(head.subarray(0, read), path);
  if (kind) throw new NotAModelError(`${path} is ${kind}, not a model: ${howToGiveOne()}`);
}

/**
 * Whether the file parses as an ONNX model, with `capsnet inspect`'s check: protobuf's own complaint says nothing
 * about which file or why. Costs a parse of the whole file, so classify runs it only after a load failed.
 * @throws Error naming the file and the fix when it is not an ONNX model
 */
export async function checkOnnxModel(path: string): Promise<void> {
  const { readFileSync } = await import('node:fs');
  let bytes: Uint8Array;
  try {
    bytes = readFileSync(path);
  } catch {
    return; // missing or unreadable: the loader says why
  }
  const { decodeModelChecked } = await import('../export/inspect.ts');
  try {
    decodeModelChecked(bytes, path);
  } catch (e) {
    throw new NotAModelError(`${(e as Error).message.replace(/: pass the model\.onnx .*$/, '')}: ${howToGiveOne()}`);
  }
}
