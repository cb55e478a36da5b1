// Where the Hugging Face tools keep their things, read from the same environment variables they read, so a pull
// here and `huggingface-cli download`, transformers or vLLM share one cache and one login: the cache folder, the
// endpoint (a mirror), offline mode and the token.
import { existsSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { HubError } from './errors.js';

export type Env = Record<string, string | undefined>;

export const DEFAULT_ENDPOINT = 'https://huggingface.co';

/** $HF_HOME, else $XDG_CACHE_HOME/huggingface, else ~/.cache/huggingface (huggingface_hub's constants.py). */
export function hfHome(env: Env = process.env): string {
  return env.HF_HOME || join(env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'huggingface');
}

/** $HF_HUB_CACHE, else the legacy $HUGGINGFACE_HUB_CACHE, else $HF_HOME/hub. */
export function hubCacheDir(env: Env = process.env): string {
  return env.HF_HUB_CACHE || env.HUGGINGFACE_HUB_CACHE || join(hfHome(env), 'hub');
}

/** $HF_ENDPOINT (a mirror) without its trailing slash, else huggingface.co. */
export function hubEndpoint(env: Env = process.env): string {
  const raw = env.HF_ENDPOINT?.trim();
  if (!raw) return DEFAULT_ENDPOINT;
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new HubError('bad-input', `HF_ENDPOINT is not an address ("${raw}"): set it to e.g. https://hf-mirror.com`);
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:')
    throw new HubError('bad-input', `HF_ENDPOINT must be an http(s) address, not ${url.protocol}`);
  return raw.replace(/\/+$/, '');
}

/** HF_HUB_OFFLINE=1 (or ON, YES, TRUE): no request at all, only the cache. */
export function hubOffline(env: Env = process.env): boolean {
  return ['1', 'ON', 'YES', 'TRUE'].includes((env.HF_HUB_OFFLINE ?? '').trim().toUpperCase());
}

export interface FoundToken {
  token: string;
  /** Where it came from, for messages: "given", "HF_TOKEN", or the token file's path. Never the token itself. */
  from: string;
}

/**
 * The token to use, in huggingface_hub's order: the one given (--token, the app's form), $HF_TOKEN, the legacy
 * $HUGGING_FACE_HUB_TOKEN, then the file `huggingface-cli login` writes ($HF_TOKEN_PATH, else $HF_HOME/token).
 */
export function findToken(given: string | undefined, env: Env = process.env): FoundToken | null {
  if (given?.trim()) return { token: given.trim(), from: 'given' };
  for (const name of ['HF_TOKEN', 'HUGGING_FACE_HUB_TOKEN']) {
    const t = env[name]?.trim();
    if (t) return { token: t, from: name };
  }
  const file = env.HF_TOKEN_PATH || join(hfHome(env), 'token');
  if (!existsSync(file)) return null;
  try {
    const t = readFileSync(file, 'utf8').trim();
    return t ? { token: t, from: file } : null;
  } catch {
    return null; // an unreadable token file is the same as none: the Hub then says whether one is needed
  }
}
