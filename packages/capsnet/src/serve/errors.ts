/** A client error: the server answers `statusCode` with `{ error: { code, message } }` and keeps serving. */
export class ServeError extends Error {
  override name = 'ServeError';
  constructor(
    readonly statusCode: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export const badRequest = (code: string, message: string) => new ServeError(400, code, message);
