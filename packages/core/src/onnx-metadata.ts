/**
 * Reads the CapsNet metadata out of an ONNX file. ONNX Runtime's JavaScript API does not expose a model's
 * metadata_props, so this walks the top level of the ModelProto protobuf itself (fields 2 producer_name,
 * 3 producer_version, 14 metadata_props) and skips everything else, the graph included, by its length prefix.
 */
import { PreprocessError, defaultPreprocessing, parsePreprocessing } from './image.ts';
import { METADATA_KEYS, PRODUCER_NAME, type ModelMetadata } from './format.ts';
import { ModelFormatError } from './errors.ts';
import { type CapsNetConfig, validateConfig } from './config.ts';
import { withRoutingConfig } from './routing.ts';

export interface OnnxHeader {
  producerName: string;
  producerVersion: string;
  props: Record<string, string>;
}

class Reader {
  pos = 0;
  constructor(
    private readonly bytes: Uint8Array,
    private readonly end = bytes.length,
  ) {}

  get done(): boolean {
    return this.pos >= this.end;
  }

  varint(): number {
    let result = 0;
    let scale = 1;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.end) throw new ModelFormatError('truncated protobuf varint');
      const byte = this.bytes[this.pos++]!;
      result += (byte & 0x7f) * scale;
      if (byte < 0x80) return result;
      scale *= 128;
    }
    throw new ModelFormatError('malformed protobuf varint');
  }

  skip(wireType: number): void {
    if (wireType === 0) this.varint();
    else if (wireType === 1) this.pos += 8;
    else if (wireType === 2) {
      const length = this.varint(); // read before adding: `pos += varint()` would add to the old position
      this.pos += length;
    } else if (wireType === 5) this.pos += 4;
    else throw new ModelFormatError(`unsupported protobuf wire type ${wireType}`);
    if (this.pos > this.end) throw new ModelFormatError('truncated protobuf field');
  }

  lengthDelimited(): Uint8Array {
    const length = this.varint();
    if (this.pos + length > this.end) throw new ModelFormatError('truncated protobuf field');
    const out = this.bytes.subarray(this.pos, this.pos + length);
    this.pos += length;
    return out;
  }
}

const utf8 = new TextDecoder();

/** producer and metadata_props of an ONNX model, without parsing its graph. */
export function readOnnxHeader(bytes: Uint8Array): OnnxHeader {
  const header: OnnxHeader = { producerName: '', producerVersion: '', props: {} };
  const reader = new Reader(bytes);
  try {
    while (!reader.done) {
      const key = reader.varint();
      const field = Math.floor(key / 8);
      const wireType = key & 7;
      if (wireType === 2 && (field === 2 || field === 3 || field === 14)) {
        const value = reader.lengthDelimited();
        if (field === 2) header.producerName = utf8.decode(value);
        else if (field === 3) header.producerVersion = utf8.decode(value);
        else {
          const entry = new Reader(value);
          let k = '';
          let v = '';
          while (!entry.done) {
            const entryKey = entry.varint();
            if ((entryKey & 7) === 2 && entryKey >> 3 === 1) k = utf8.decode(entry.lengthDelimited());
            else if ((entryKey & 7) === 2 && entryKey >> 3 === 2) v = utf8.decode(entry.lengthDelimited());
            else entry.skip(entryKey & 7);
          }
          header.props[k] = v;
        }
      } else {
        reader.skip(wireType);
      }
    }
  } catch (e) {
    throw new ModelFormatError(`not a valid ONNX file (${(e as Error).message}): pass the model.onnx that \`capsnet export\` wrote`);
  }
  return header;
}

function positiveInt(config: Record<string, unknown>, key: string): number {
  const value = config[key];
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1) {
    throw new ModelFormatError(`${METADATA_KEYS.config}.${key} must be a positive integer, got ${JSON.stringify(value)}: re-export the model`);
  }
  return value;
}

/** The training config a file stores, checked as training checks it (validateConfig); a bad one names the fix. */
function storedConfig(stored: Record<string, unknown>): CapsNetConfig {
  try {
    validateConfig(stored as unknown as CapsNetConfig);
  } catch (e) {
    throw new ModelFormatError(`metadata "${METADATA_KEYS.config}": ${(e as Error).message}: re-export the model`);
  }
  return stored as unknown as CapsNetConfig;
}

/** The CapsNet metadata of an exported model; errors name the missing piece and the fix. */
export function parseModelMetadata(header: OnnxHeader): ModelMetadata {
  const { props } = header;
  const raw = props[METADATA_KEYS.config];
  if (raw === undefined) {
    const kept = Object.keys(props);
    if (header.producerName === PRODUCER_NAME && !kept.some((k) => k.startsWith('capsnet.'))) {
      // Ours by its producer, but none of our metadata is left: a graph tool rewrote the file without it.
      throw new ModelFormatError(
        `the ONNX file was written by ${PRODUCER_NAME}${header.producerVersion ? ` ${header.producerVersion}` : ''} but its CapsNet metadata ` +
          `("${METADATA_KEYS.config}") is missing (${kept.length ? `it keeps only ${kept.slice(0, 5).join(', ')}` : 'it has no metadata_props at all'}): ` +
          'a graph tool (an optimizer or converter) dropped it; run the tool keeping metadata_props, copy ' +
          'them back from the exported file, or export again with `capsnet export`',
      );
    }
    const family = props['capsnet.model'];
    throw new ModelFormatError(
      family
        ? `the ONNX file is a ${family.slice(0, 40)} export, not a CapsNet (it has no ` +
            `"${METADATA_KEYS.config}" metadata): the runtime loads CapsNet exports; export a CapsNet run with ` +
            `\`capsnet export\``
        : `the ONNX file has no "${METADATA_KEYS.config}" metadata, so it is not a CapsNet export: export one with \`capsnet export\``,
    );
  }
  let stored: Record<string, unknown>;
  try {
    stored = JSON.parse(raw) as Record<string, unknown>;
    if (!stored || typeof stored !== 'object' || Array.isArray(stored)) throw new Error('not an object');
  } catch (e) {
    throw new ModelFormatError(`metadata "${METADATA_KEYS.config}" is not a JSON object (${(e as Error).message}): re-export the model`);
  }
  // Files exported before `routing` existed carry `routingIterations` (core/routing.ts).
  stored = withRoutingConfig(stored);
  const numClasses = positiveInt(stored, 'numClasses');
  let classLabels = Array.from({ length: numClasses }, (_, i) => String(i));
  const rawLabels = props[METADATA_KEYS.classLabels];
  if (rawLabels !== undefined) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(rawLabels);
    } catch {
      parsed = undefined;
    }
    if (!Array.isArray(parsed) || parsed.length !== numClasses) {
      throw new ModelFormatError(`metadata "${METADATA_KEYS.classLabels}" must be a JSON array of ${numClasses} labels, got ${rawLabels.slice(0, 80)}`);
    }
    classLabels = parsed.map(String);
  }
  const accuracy = props[METADATA_KEYS.testAccuracy];
  const accuracyValue = accuracy === undefined || accuracy === '' ? Number.NaN : Number(accuracy);
  const routing = props[METADATA_KEYS.routingIterations];
  const shape = { height: positiveInt(stored, 'inputHeight'), width: positiveInt(stored, 'inputWidth'), channels: positiveInt(stored, 'inputChannels') };
  const digitDim = positiveInt(stored, 'digitDim');
  const config = storedConfig(stored);
  const dataset = props[METADATA_KEYS.dataset] ?? '';
  let recorded;
  try {
    recorded = parsePreprocessing(props[METADATA_KEYS.preprocessing]);
  } catch (e) {
    if (e instanceof PreprocessError) throw new ModelFormatError(e.message);
    throw e;
  }
  return {
    inputHeight: shape.height,
    inputWidth: shape.width,
    inputChannels: shape.channels,
    numClasses,
    digitDim,
    routingIterations: routing !== undefined && Number.isInteger(Number(routing)) ? Number(routing) : config.routing.iterations,
    classLabels,
    dataset,
    datasetFiles: datasetFiles(props[METADATA_KEYS.datasetFiles]),
    testAccuracy: Number.isFinite(accuracyValue) ? accuracyValue : null,
    checkpointSha256: props[METADATA_KEYS.checkpointSha256] ?? '',
    decoderSha256: props[METADATA_KEYS.decoderSha256] ?? '',
    exportedAt: props[METADATA_KEYS.exportedAt] ?? '',
    precision: props[METADATA_KEYS.precision] || 'fp32',
    computePrecision: props[METADATA_KEYS.computePrecision] || 'fp32',
    producer: header.producerName,
    producerVersion: header.producerVersion,
    config,
    preprocessing: recorded ?? defaultPreprocessing(dataset, shape),
    preprocessingRecorded: recorded !== null,
    presenceThreshold: presenceThreshold(props[METADATA_KEYS.presenceThreshold], config),
  };
}

/** The recorded data files' hashes ({} when absent); anything but a JSON object of hex strings is an error. */
function datasetFiles(raw: string | undefined): Record<string, string> {
  if (raw === undefined || raw === '') return {};
  let value: unknown;
  try {
    value = JSON.parse(raw);
  } catch {
    value = undefined;
  }
  if (!value || typeof value !== 'object' || Array.isArray(value) || !Object.values(value).every((v) => typeof v === 'string' && /^[0-9a-f]{64}$/.test(v))) {
    throw new ModelFormatError(
      `metadata "${METADATA_KEYS.datasetFiles}" must be a JSON object of file names to SHA-256 hex digests, got ${raw.slice(0, 80)}: re-export the model`,
    );
  }
  return { ...(value as Record<string, string>) };
}

/** The recorded threshold, else the config's margin-loss m-, else 0.1 (the paper's m-). */
function presenceThreshold(raw: string | undefined, config: CapsNetConfig): number {
  if (raw !== undefined && raw !== '') {
    const value = Number(raw);
    if (!Number.isFinite(value) || value < 0 || value >= 1) {
      throw new ModelFormatError(`metadata "${METADATA_KEYS.presenceThreshold}" must be a number in [0, 1), got ${raw.slice(0, 40)}: re-export the model`);
    }
    return value;
  }
  const mMinus = config.mMinus;
  return typeof mMinus === 'number' && mMinus >= 0 && mMinus < 1 ? mMinus : 0.1;
}

export function readModelMetadata(bytes: Uint8Array): ModelMetadata {
  return parseModelMetadata(readOnnxHeader(bytes));
}
