/**
 * Writes affNIST-style level-5 MAT files for the tests (the reader, experiments/affnist.ts, is the library's; only
 * tests write these files).
 */
import { deflateSync } from 'node:zlib';
import { MI, MX } from '../../packages/capsnet/src/experiments/affnist.ts';

function element(type: number, payload: Buffer): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32LE(type, 0);
  head.writeUInt32LE(payload.length, 4);
  const pad = Buffer.alloc((8 - (payload.length % 8)) % 8);
  return Buffer.concat([head, payload, pad]);
}

function matrix(name: string, mxClass: number, dims: number[], body: Buffer[]): Buffer {
  const flags = Buffer.alloc(8);
  flags.writeUInt32LE(mxClass, 0);
  const dimsBuf = Buffer.alloc(4 * dims.length);
  dims.forEach((d, i) => dimsBuf.writeInt32LE(d, 4 * i));
  return element(MI.MATRIX, Buffer.concat([element(MI.UINT32, flags), element(MI.INT32, dimsBuf), element(MI.INT8, Buffer.from(name, 'latin1')), ...body]));
}

/**
 * A level-5 .mat file holding a 1x1 struct `affNISTdata` with `image` (side*side x N, uint8) and `label_int`
 * (1 x N, uint8), as affNIST lays them out; compressed like MATLAB's default.
 */
export function encodeAffnistMat(images: Uint8Array, labels: Uint8Array, side: number, compress = true): Buffer {
  const count = labels.length;
  const fieldNames = ['image', 'label_int'];
  const fieldLength = 32;
  const namesBuf = Buffer.alloc(fieldLength * fieldNames.length);
  fieldNames.forEach((f, i) => namesBuf.write(f, i * fieldLength, 'latin1'));
  const fieldLen = Buffer.alloc(4);
  fieldLen.writeInt32LE(fieldLength, 0);
  const small = Buffer.alloc(8);
  small.writeUInt32LE((4 << 16) | MI.INT32, 0);
  fieldLen.copy(small, 4);
  const struct = matrix(
    'affNISTdata',
    MX.STRUCT,
    [1, 1],
    [
      small,
      element(MI.INT8, namesBuf),
      matrix('', MX.UINT8, [side * side, count], [element(MI.UINT8, Buffer.from(images))]),
      matrix('', MX.UINT8, [1, count], [element(MI.UINT8, Buffer.from(labels))]),
    ],
  );
  const header = Buffer.alloc(128, 0x20);
  header.write('MATLAB 5.0 MAT-file, written by capsnet-onnx experiments', 0, 'latin1');
  header.fill(0, 116, 124);
  header.writeUInt16LE(0x0100, 124);
  header.write('IM', 126, 'latin1');
  if (!compress) return Buffer.concat([header, struct]);
  const z = deflateSync(struct);
  const head = Buffer.alloc(8);
  head.writeUInt32LE(MI.COMPRESSED, 0);
  head.writeUInt32LE(z.length, 4);
  return Buffer.concat([header, head, z]);
}
