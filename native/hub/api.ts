// The Hub's API through its own client library (@huggingface/hub): which commit a revision is, whether the model is
// gated, and the repository's files with their sizes and content ids. Its requests go through one fetch of ours,
// which adds the token (only for the endpoint's own origin) and remembers the Hub's X-Error-Code, which the library's
// HubApiError drops and which tells a gated model from a missing one.
import { HubApiError, listFiles, modelInfo } from '@huggingface/hub';
import { HubError, networkCause } from './errors.js';

export const USER_AGENT = 'delta-studio';

/** A file of the repository as the Hub lists it. */
export interface RepoFile {
  path: string;
  size: number;
  /** The git blob id (sha1 of the git object). */
  oid: string;
  /** Large files: the sha256 of the content (its name in the cache). */
  lfs?: { oid: string; size: number };
}

export interface HubContext {
  repo: string;
  revision: string;
  endpoint: string;
  /** Where the token came from, or null without one. */
  tokenFrom: string | null;
}

export interface HubClient {
  fetch: typeof fetch;
  /** The X-Error-Code of the last refused request ("GatedRepo", "RepoNotFound", …). */
  lastErrorCode(): string | null;
}

/** A fetch for the Hub: the token on the endpoint's own origin only (never to a CDN), and refusals remembered. */
export function hubClient(base: typeof fetch, endpoint: string, token: string | null): HubClient {
  const origin = new URL(endpoint).origin;
  let errorCode: string | null = null;
  const wrapped = async (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
    const url = new URL(input instanceof Request ? input.url : String(input));
    const headers = new Headers(init?.headers);
    if (token && url.origin === origin) headers.set('authorization', `Bearer ${token}`);
    else headers.delete('authorization');
    headers.set('user-agent', USER_AGENT);
    const res = await base(input, { ...init, headers });
    if (!res.ok) errorCode = res.headers.get('x-error-code');
    return res;
  };
  return { fetch: wrapped as typeof fetch, lastErrorCode: () => errorCode };
}

const licence = (repo: string): string => `https://huggingface.co/${repo}`;

/** A gated model asked for without a token (or with one the Hub did not take). */
export function gatedWithoutToken(repo: string): HubError {
  return new HubError(
    'unauthorized',
    `${repo} is gated: accept its licence at ${licence(repo)} (signed in to Hugging Face), then give a token of that account — the Token field, --token, HF_TOKEN or \`huggingface-cli login\``,
  );
}

/** A refusal of the Hub (status and X-Error-Code) as the HubError that says what to do. */
export function refusal(ctx: HubContext, status: number, errorCode: string | null, what: string): HubError {
  const { repo, endpoint, tokenFrom } = ctx;
  const token = tokenFrom ? `the token (${tokenFrom === 'given' ? 'given' : `from ${tokenFrom}`})` : null;
  if (errorCode === 'GatedRepo' || (status === 403 && errorCode !== 'RepoNotFound')) {
    if (!token || status === 401) return gatedWithoutToken(repo);
    return new HubError(
      'forbidden',
      `${token} has no access to ${repo}: it is gated — accept its licence at ${licence(repo)} with the token's account and wait for access to be granted, or use a token of an account that has it (a fine-grained token also needs "read access to public gated repositories")`,
    );
  }
  if (status === 401) {
    if (token && errorCode !== 'RepoNotFound')
      return new HubError(
        'unauthorized',
        `${endpoint} refused ${token} (401): it is mistyped, expired or revoked — make a new one at https://huggingface.co/settings/tokens`,
      );
    return new HubError(
      'not-found',
      `there is no model ${repo} on ${endpoint}, or it is private: check the name${token ? '' : ' (for a private model, give a token with access to it)'}`,
    );
  }
  if (status === 404) {
    if (errorCode === 'RevisionNotFound')
      return new HubError('not-found', `${repo} has no revision "${ctx.revision}": name a branch, a tag or a commit`);
    if (errorCode === 'EntryNotFound')
      return new HubError('not-found', `${repo} lists ${what} but the Hub has no such file: pull again later`);
    return new HubError('not-found', `there is no model ${repo} on ${endpoint}: check the name`);
  }
  if (status === 416) return new HubError('corrupt', `${endpoint} refused the byte range asked for ${what} (416)`);
  return new HubError(
    'network',
    `${endpoint} answered ${status} for ${what}${status >= 500 ? ': the Hub is having trouble, try again later' : ''}`,
  );
}

/** Any failure of a request to the Hub as a HubError (refusals, a lost network); others as they are. */
export function hubFailure(e: unknown, ctx: HubContext, client: HubClient, what: string): unknown {
  if (e instanceof HubError) return e;
  if (e instanceof HubApiError) return refusal(ctx, e.statusCode, client.lastErrorCode(), what);
  const cause = networkCause(e);
  if (cause) return new HubError('network', `could not reach ${ctx.endpoint} (${cause})`, { cause: e });
  return e;
}

/** The commit a revision points at, and whether the model is gated (the Hub's model info). */
export async function resolveRevision(
  client: HubClient,
  ctx: HubContext,
): Promise<{ commit: string; gated: false | 'auto' | 'manual' }> {
  try {
    const info = await modelInfo({
      name: ctx.repo,
      revision: ctx.revision,
      hubUrl: ctx.endpoint,
      fetch: client.fetch,
      additionalFields: ['sha'],
    });
    if (!/^[0-9a-f]{40}$/.test(info.sha ?? ''))
      throw new HubError('network', `${ctx.endpoint} did not say which commit ${ctx.revision} of ${ctx.repo} is`);
    return { commit: info.sha, gated: info.gated ?? false };
  } catch (e) {
    throw hubFailure(e, ctx, client, `${ctx.repo}@${ctx.revision}`);
  }
}

/** The files at the top of the repository at a commit (the engine reads nothing in subfolders). */
export async function listRepoFiles(client: HubClient, ctx: HubContext, commit: string): Promise<RepoFile[]> {
  const files: RepoFile[] = [];
  try {
    for await (const f of listFiles({
      repo: { type: 'model', name: ctx.repo },
      revision: commit,
      recursive: false,
      hubUrl: ctx.endpoint,
      fetch: client.fetch,
    })) {
      if (f.type !== 'file' || f.path.includes('/')) continue;
      files.push({
        path: f.path,
        size: f.lfs?.size ?? f.size,
        oid: f.oid ?? '',
        ...(f.lfs ? { lfs: { oid: f.lfs.oid, size: f.lfs.size } } : {}),
      });
    }
  } catch (e) {
    throw hubFailure(e, ctx, client, `the files of ${ctx.repo}`);
  }
  return files;
}
