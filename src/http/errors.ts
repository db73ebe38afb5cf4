/**
 * One error shape for every route: `{ "error": { "code", "message" } }` with a stable code. Errors that carry an
 * HTTP status (the database layer's, the URL normaliser's, Fastify's validation) keep their message; anything else
 * is a 500 whose message is hidden (it is logged with the request id, never sent).
 */
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { InvalidMasterUrlError } from '../ingest/master-url.js';

export const ERROR_CODES: Record<number, string> = {
  400: 'BAD_REQUEST',
  401: 'UNAUTHORIZED',
  403: 'FORBIDDEN',
  404: 'NOT_FOUND',
  405: 'METHOD_NOT_ALLOWED',
  406: 'NOT_ACCEPTABLE',
  409: 'CONFLICT',
  413: 'PAYLOAD_TOO_LARGE',
  415: 'UNSUPPORTED_MEDIA_TYPE',
  429: 'RATE_LIMITED',
  503: 'UNAVAILABLE',
};

/** An error a route raises on purpose; its message is shown to the client. */
export class HttpError extends Error {
  constructor(
    readonly statusCode: number,
    message: string,
  ) {
    super(message);
    this.name = 'HttpError';
  }
}

export const notFound = (what: string): HttpError => new HttpError(404, `${what} not found`);
export const badRequest = (message: string): HttpError => new HttpError(400, message);

export function errorBody(statusCode: number, message: string) {
  return { error: { code: ERROR_CODES[statusCode] ?? (statusCode >= 500 ? 'INTERNAL' : 'BAD_REQUEST'), message } };
}

function statusOf(error: FastifyError | Error): number {
  if (error instanceof InvalidMasterUrlError) return 400;
  const status = (error as { statusCode?: unknown }).statusCode;
  if (typeof status === 'number' && status >= 400 && status < 600) return status;
  return 500;
}

export function errorHandler(error: FastifyError, request: FastifyRequest, reply: FastifyReply): void {
  const status = statusOf(error);
  if (status >= 500) {
    // The message may hold internals (SQL, paths); it goes to the log, the client gets a generic one.
    // Only name, code and message: a driver error's enumerable fields can carry query parameters.
    request.log.error({ err: { name: error.name, code: error.code, message: error.message }, reqId: request.id }, 'request failed');
    void reply.code(status).send(errorBody(status, status === 503 ? 'service unavailable' : `internal error (request ${request.id})`));
    return;
  }
  void reply.code(status).send(errorBody(status, error.message));
}
