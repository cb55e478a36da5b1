// What can go wrong talking to the Hub, as kinds the application maps onto the contract's error codes. Every message
// says what to do next, and none holds a token: they are built from the repository, the endpoint and the file only.

export type HubErrorKind =
  /** A name, revision or setting the Hub would never accept. */
  | 'bad-input'
  /** No such repository, revision or file. */
  | 'not-found'
  /** A token is needed (gated or private) or the one given was refused. */
  | 'unauthorized'
  /** The token is fine but has no access (a gated model whose licence its account has not accepted). */
  | 'forbidden'
  /** The repository has nothing the engine reads as a model (no config.json, no safetensors weights). */
  | 'unusable'
  /** The connection failed or dropped; what was downloaded is kept. */
  | 'network'
  /** HF_HUB_OFFLINE is set and the cache does not have it. */
  | 'offline'
  /** A file did not match the size or hash the Hub listed. */
  | 'corrupt'
  /** Another process is downloading the same file into the same cache. */
  | 'busy';

export class HubError extends Error {
  constructor(
    readonly kind: HubErrorKind,
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.name = 'HubError';
  }
}

const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ENOTFOUND',
  'EAI_AGAIN',
  'ETIMEDOUT',
  'EPIPE',
  'ENETUNREACH',
  'EHOSTUNREACH',
  'UND_ERR_SOCKET',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_BODY_TIMEOUT',
  'UND_ERR_CLOSED',
]);

/** The error code behind a fetch failure ("ECONNREFUSED", "UND_ERR_SOCKET"), if it is one. */
export function networkCause(e: unknown): string | null {
  for (let c = e as { code?: unknown; cause?: unknown } | undefined, depth = 0; c && depth < 4; depth++) {
    if (typeof c.code === 'string' && NETWORK_CODES.has(c.code)) return c.code;
    c = c.cause as typeof c;
  }
  // undici's own words for a request that never got an answer, or a body cut short (with its reason when it says).
  if (e instanceof TypeError && /^(fetch failed|terminated)$/.test(e.message)) {
    const why = (e.cause as Error | undefined)?.message;
    return why ? `${e.message}: ${why}` : e.message;
  }
  return null;
}
