// Engine errors as the contract's: the engine's messages already say what to do next, so they pass through; the kind
// of error decides the code. Errors that crossed a thread or process boundary arrive as data (name, code, message)
// and are judged the same way.
import { ContractError, ERROR_CODES, type ApiError, type ErrorCode } from '../contract/index.js';
import { WorkspaceError } from '../store/workspace.js';
import { PathEscapeError } from '../files/paths.js';
import { DatasetError } from '../data/index.js';

const WORKSPACE_CODES: Partial<Record<string, ErrorCode>> = {
  'not-found': 'not-found',
  exists: 'conflict',
  conflict: 'conflict',
  'bad-input': 'bad-params',
  damaged: 'damaged',
};

/** Any thrown value as a ContractError. */
export function toContractError(e: unknown): ContractError {
  if (e instanceof ContractError) return e;
  const err = e instanceof Error ? e : new Error(String(e));
  const named = err as Error & { code?: unknown; error?: ApiError };
  // A contract error rebuilt from data (a worker's): keep its code.
  if (named.error && typeof named.error.code === 'string' && ERROR_CODES.includes(named.error.code))
    return new ContractError(named.error);
  const code = typeof named.code === 'string' ? named.code : undefined;
  if (err instanceof WorkspaceError || err.name === 'WorkspaceError')
    return new ContractError({ code: (code ? WORKSPACE_CODES[code] : undefined) ?? 'failed', message: err.message });
  if (err instanceof PathEscapeError || err.name === 'PathEscapeError')
    return new ContractError({ code: 'path-outside', message: err.message });
  // A data file that cannot be imported as it is: the user's to fix (the message names file, line and column).
  if (err instanceof DatasetError || err.name === 'DatasetError')
    return new ContractError({ code: 'bad-params', message: err.message });
  if (code === 'ENOENT') return new ContractError({ code: 'not-found', message: err.message });
  return new ContractError({ code: 'failed', message: err.message });
}

export const toApiError = (e: unknown): ApiError => toContractError(e).error;
