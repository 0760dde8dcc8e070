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
