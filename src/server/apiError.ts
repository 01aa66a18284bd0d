import { QllamaError } from '../errors.js';

/** OpenAI's error `type` values (plus the one we need for a model that is not loaded). */
export type ApiErrorType =
  | 'invalid_request_error'
  | 'authentication_error'
  | 'not_found_error'
  | 'rate_limit_error'
  | 'server_error';

/** The body OpenAI sends with every non-2xx answer; the `openai` client reads `error.message`. */
export interface ApiErrorBody {
  readonly error: {
    readonly message: string;
    readonly type: ApiErrorType;
    readonly param: string | null;
    readonly code: string | null;
  };
}

/**
 * A failure the client caused or can act on, with its HTTP status. Routes throw it; the
 * server's error handler turns it (and fastify's own 4xx) into an `ApiErrorBody`.
 */
export class ApiError extends QllamaError {
  constructor(
    readonly status: number,
    message: string,
    readonly type: ApiErrorType,
    readonly param: string | null = null,
    readonly code: string | null = null,
  ) {
    super(message);
  }

  toBody(): ApiErrorBody {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

export function badRequest(message: string, param: string | null = null, code: string | null = null): ApiError {
  return new ApiError(400, message, 'invalid_request_error', param, code);
}

export function notFound(message: string, code: string | null = null, param: string | null = null): ApiError {
  return new ApiError(404, message, 'invalid_request_error', param, code);
}
