/** Errors the runtime throws on purpose: each message names the problem and how to fix it. */

/** A named device that cannot run here (and why, and how to get it). Never followed by a silent fallback. */
export class DeviceUnavailableError extends Error {
  override name = 'DeviceUnavailableError';
}

/** Images or capsules that do not fit the model: wrong length, NaN/Inf, out of range, empty or too large a batch. */
export class InputError extends Error {
  override name = 'InputError';
}

/** A file that is not a CapsNet ONNX export (missing metadata or graph inputs/outputs). */
export class ModelFormatError extends Error {
  override name = 'ModelFormatError';
}

/**
 * A model or decoder file that could not be read, so its format was never looked at. `code` says why: NOT_FOUND
 * (no such file, or HTTP 404) or UNREADABLE (the system or the server refused it); `path` is the path or URL.
 */
export class ModelFileError extends Error {
  override name = 'ModelFileError';
  constructor(
    message: string,
    readonly path: string,
    readonly code: 'NOT_FOUND' | 'UNREADABLE',
  ) {
    super(message);
  }
}

/** A Classifier used after its dispose(): load the model again. */
export class ClassifierDisposedError extends Error {
  override name = 'ClassifierDisposedError';
}
