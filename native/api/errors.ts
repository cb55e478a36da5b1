// Engine errors as the contract's ApiError: the engine's messages already say what to do next, so they pass
// through; the class decides the code. Shared by the service and the workers it starts.
import { ContractError, type ApiError } from './contract.js';
import { WorkspaceError } from '../store/workspace.js';
import { PathEscapeError } from '../files/paths.js';
import { DatasetError } from '../data/index.js';

const WS_CODES: Partial<Record<WorkspaceError['code'], ApiError['code']>> = {
  'not-found': 'not-found',
  exists: 'conflict',
  conflict: 'conflict',
  'bad-input': 'bad-params',
  damaged: 'damaged',
};

/** Any error as a ContractError: engine messages already say what to do next, so they pass through. */
export function toContractError(e: unknown): ContractError {
  if (e instanceof ContractError) return e;
  const err = e instanceof Error ? e : new Error(String(e));
  if (err instanceof WorkspaceError)
    return new ContractError({ code: WS_CODES[err.code] ?? 'failed', message: err.message });
  if (err instanceof PathEscapeError) return new ContractError({ code: 'path-outside', message: err.message });
  if (err instanceof DatasetError) return new ContractError({ code: 'failed', message: err.message });
  if ((err as NodeJS.ErrnoException).code === 'ENOENT')
    return new ContractError({ code: 'not-found', message: err.message });
  return new ContractError({ code: 'failed', message: err.message });
}
