// An error as it crosses a transport: a stable code and a message that says what to do next.

export const ERROR_CODES = [
  'bad-params',
  'not-found',
  'path-outside',
  'unauthorized',
  'conflict',
  'failed',
  'unknown-method',
  'damaged',
] as const;
export type ErrorCode = (typeof ERROR_CODES)[number];

export interface ApiError {
  code: ErrorCode;
  message: string;
  /** For bad-params: which parameter, and what was expected. */
  issues?: { path: string; message: string }[];
}

export class ContractError extends Error {
  constructor(readonly error: ApiError) {
    super(error.message);
    this.name = 'ContractError';
  }
}

export const notFound = (message: string): ContractError => new ContractError({ code: 'not-found', message });
export const conflict = (message: string): ContractError => new ContractError({ code: 'conflict', message });
export const badParams = (message: string, path?: string): ContractError =>
  new ContractError({ code: 'bad-params', message, ...(path ? { issues: [{ path, message }] } : {}) });
