// Errors cross a thread or process boundary as data and are rebuilt on the other side: name, message, code and the
// error's other plain fields survive, and an error of a class the receiver knows comes back as that class, so
// `instanceof` (and whatever maps classes to codes) works there as if it had been thrown in that thread.

/** An error as it crosses: JSON-safe, so it fits both structured clone (threads) and JSON (child process IPC). */
export interface ErrorData {
  name: string;
  message: string;
  code?: string;
  stack?: string;
  [field: string]: unknown;
}

/** Error classes the receiver rebuilds by name, e.g. `{ WorkspaceError }`; the keys are the names that cross. */
export type ErrorClasses = Record<string, abstract new (...args: never[]) => Error>;

// The built-in classes always come back as themselves.
const BUILT_IN: ErrorClasses = { Error, TypeError, RangeError, SyntaxError, ReferenceError, EvalError, URIError };

export function errorToData(e: unknown): ErrorData {
  if (!(e instanceof Error)) return { name: 'Error', message: String(e) };
  const data: ErrorData = { name: e.name, message: e.message, stack: e.stack };
  for (const [field, value] of Object.entries(e)) {
    if (field === 'cause' || value === undefined) continue;
    try {
      // Only what JSON keeps: a field that is a handle or a function has no meaning on the other side.
      const json = JSON.stringify(value);
      if (json !== undefined) data[field] = JSON.parse(json);
    } catch {
      /* a field that cannot cross is left behind */
    }
  }
  return data;
}

export function errorFromData(data: ErrorData, known: ErrorClasses = {}): Error {
  const { name, message, stack, ...fields } = data;
  const cls = Object.hasOwn(known, name) ? known[name] : Object.hasOwn(BUILT_IN, name) ? BUILT_IN[name] : Error;
  // Not through the constructor: its parameters differ per class, and the fields are all here already.
  const e = Object.create(cls.prototype) as Error;
  Object.defineProperty(e, 'message', { value: message, writable: true, configurable: true });
  // The stack of the side that threw: it names the place that failed.
  Object.defineProperty(e, 'stack', { value: stack ?? `${name}: ${message}`, writable: true, configurable: true });
  // A name the class gives already stays on its prototype, as for an error made here.
  return Object.assign(e, name === cls.prototype.name ? {} : { name }, fields);
}

/**
 * The other side ended before answering: killed, crashed, out of memory, or exited. Not an error it reported — the
 * work may be fine to continue — so a caller can tell the two apart by class (or `code`), never by message.
 */
export class EndedError extends Error {
  readonly code = 'ended';
  constructor(
    message: string,
    readonly exitCode: number | null,
    readonly signal: string | null,
  ) {
    super(message);
    this.name = 'EndedError';
  }
}
