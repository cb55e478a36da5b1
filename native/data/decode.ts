// Streaming text decoding of an input file: chunks of bytes in, strings out, never the whole file in memory.
// UTF-8 is checked with a fatal TextDecoder fed chunk by chunk ({ stream: true } carries a sequence cut by a
// chunk boundary into the next chunk); on the first invalid byte the error names its byte offset and line.
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { TextDecoder } from 'node:util';
import { DatasetError, type TextEncoding } from './types.js';

export interface DecodeResult {
  bytes: number;
  sha256: string;
  /** The encoding used (UTF-16 LE when it was detected by its BOM). */
  encoding?: TextEncoding;
}

/** Length of the UTF-8 sequence a lead byte starts (0 for a byte that cannot start one). */
function seqLength(b: number): number {
  if (b < 0x80) return 1;
  if (b >= 0xc2 && b <= 0xdf) return 2;
  if (b >= 0xe0 && b <= 0xef) return 3;
  if (b >= 0xf0 && b <= 0xf4) return 4;
  return 0;
}

/** Index of the first byte that is not valid UTF-8 (a sequence cut by the end counts only when `final`), or -1. */
export function firstInvalidUtf8(bytes: Uint8Array, final: boolean): number {
  let i = 0;
  while (i < bytes.length) {
    const b = bytes[i];
    const n = seqLength(b);
    if (n === 0) return i;
    if (n === 1) {
      i++;
      continue;
    }
    // Second-byte ranges that exclude overlong forms, surrogates and code points past U+10FFFF.
    let lo = 0x80,
      hi = 0xbf;
    if (b === 0xe0) lo = 0xa0;
    else if (b === 0xed) hi = 0x9f;
    else if (b === 0xf0) lo = 0x90;
    else if (b === 0xf4) hi = 0x8f;
    for (let k = 1; k < n; k++) {
      if (i + k >= bytes.length) return final ? i : -1;
      const c = bytes[i + k];
      if (k === 1 ? c < lo || c > hi : c < 0x80 || c > 0xbf) return i;
    }
    i += n;
  }
  return -1;
}

/** How many bytes at the end of a valid chunk start a sequence that the chunk does not finish. */
function incompleteTail(bytes: Uint8Array): number {
  for (let back = 1; back <= Math.min(3, bytes.length); back++) {
    const b = bytes[bytes.length - back];
    if (b < 0x80) return 0;
    if (b >= 0xc0) return seqLength(b) > back ? back : 0;
  }
  return 0;
}

function countNewlines(bytes: Uint8Array, end: number): number {
  let n = 0;
  for (let i = 0; i < end; i++) if (bytes[i] === 0x0a) n++;
  return n;
}

const hex = (b: number): string => `0x${b.toString(16).toUpperCase().padStart(2, '0')}`;

/**
 * Decodes `file` chunk by chunk. `encoding` undefined means UTF-8, or UTF-16 LE when the file starts with its BOM.
 * A UTF-8 or UTF-16 BOM is dropped. Refuses to read past `maxBytes` (the file may grow after it was measured).
 * `result` is filled in when the generator finishes.
 */
export async function* decodeFile(
  file: string,
  encoding: TextEncoding | undefined,
  maxBytes: number,
  result: DecodeResult,
): AsyncGenerator<string> {
  const hash = createHash('sha256');
  const stream = createReadStream(file, { highWaterMark: 1 << 16 });
  let enc: TextEncoding | undefined = encoding;
  let decoder: TextDecoder | undefined;
  let bytesBefore = 0; // bytes of the file before the current chunk
  let lines = 0; // newlines decoded so far (UTF-8 only, for error messages)
  let pending = new Uint8Array(0); // the incomplete sequence at the end of the bytes decoded so far
  const invalid = (bytes: Uint8Array, final: boolean): DatasetError => {
    const at = Math.max(0, firstInvalidUtf8(bytes, final));
    const offset = bytesBefore - pending.length + at;
    const line = lines + countNewlines(bytes, at) + 1;
    const cutOff =
      final && at < bytes.length && seqLength(bytes[at]) > 1 && firstInvalidUtf8(bytes.subarray(at), false) === -1;
    const what = cutOff || at >= bytes.length ? 'a character cut off by the end of the file' : `byte ${hex(bytes[at])}`;
    const bom =
      bytesBefore === 0 && bytes[0] === 0xfe && bytes[1] === 0xff
        ? ' (it starts with the UTF-16 BE byte order mark: save it as UTF-8)'
        : '';
    return new DatasetError(
      'bad-encoding',
      `${file}: not valid UTF-8 at byte ${offset} (line ${line}): ${what}${bom}. ` +
        `If the file is Latin-1 / ISO-8859-1 (or another single-byte encoding), import it with encoding: 'latin1'; if it is UTF-16, with encoding: 'utf-16le'`,
      { file, line },
    );
  };
  try {
    for await (const raw of stream) {
      const chunk = raw as Buffer;
      if (bytesBefore + chunk.length > maxBytes) {
        throw new DatasetError(
          'too-large',
          `${file}: more than ${maxBytes} bytes (maxBytes) while reading; the file grew after it was measured`,
          { file },
        );
      }
      hash.update(chunk);
      if (enc === undefined) enc = chunk[0] === 0xff && chunk[1] === 0xfe ? 'utf-16le' : 'utf-8';
      let text: string;
      if (enc === 'latin1') {
        text = chunk.toString('latin1');
      } else if (enc === 'utf-16le') {
        decoder ??= new TextDecoder('utf-16le', { fatal: true });
        try {
          text = decoder.decode(chunk, { stream: true });
        } catch (e) {
          throw new DatasetError(
            'bad-encoding',
            `${file}: not valid UTF-16 LE near byte ${bytesBefore} (a lone surrogate): is the encoding right?`,
            { file },
            { cause: e },
          );
        }
      } else {
        decoder ??= new TextDecoder('utf-8', { fatal: true });
        try {
          text = decoder.decode(chunk, { stream: true });
        } catch {
          const joined = new Uint8Array(pending.length + chunk.length);
          joined.set(pending, 0);
          joined.set(chunk, pending.length);
          throw invalid(joined, false);
        }
        // Only the last few bytes can belong to a cut sequence (which may have begun in earlier chunks).
        const end = chunk.subarray(Math.max(0, chunk.length - 3));
        const last = new Uint8Array(pending.length + end.length);
        last.set(pending, 0);
        last.set(end, pending.length);
        pending = last.slice(last.length - incompleteTail(last));
        lines += countNewlines(chunk, chunk.length);
      }
      bytesBefore += chunk.length;
      if (text.length > 0) yield text;
    }
    if (decoder) {
      let text: string;
      try {
        text = decoder.decode();
      } catch (e) {
        if (enc === 'utf-16le')
          throw new DatasetError(
            'bad-encoding',
            `${file}: not valid UTF-16 LE: it ends in the middle of a character (odd length or a cut surrogate pair)`,
            { file },
            { cause: e },
          );
        throw invalid(pending, true);
      }
      if (text.length > 0) yield text;
    }
    result.bytes = bytesBefore;
    result.sha256 = hash.digest('hex');
    result.encoding = enc ?? 'utf-8';
  } finally {
    stream.destroy();
  }
}
