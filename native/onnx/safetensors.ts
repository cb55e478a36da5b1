// The safetensors format: 8-byte little-endian header length, a JSON header, then the raw tensor bytes. Also the
// guarded reads every reader of a user's files shares (model folders, plugins, PEFT adapters): only regular files
// are opened, and errors about their contents name the file and the problem, never the bytes.
import { closeSync, constants, fstatSync, openSync, readFileSync, readSync, realpathSync, type Stats } from 'node:fs';
import { writeFileAtomic } from '../files/atomic.js';
import { type DType, DTYPES, bytesOf, dtypeFromSafetensors } from './dtype.js';

/** Where one tensor's bytes live inside a safetensors file. */
export interface TensorRef {
  name: string;
  dtype: DType;
  shape: number[];
  /** The file as given (possibly a symlink, e.g. in the Hugging Face cache). */
  file: string;
  /** The file with every symlink resolved: the one onnxruntime must be pointed at. */
  realFile: string;
  /** Absolute byte offset from the start of the file. */
  offset: number;
  length: number;
}

export interface SafetensorsFile {
  file: string;
  realFile: string;
  tensors: Map<string, TensorRef>;
  metadata: Record<string, string>;
  headerBytes: number;
}

// ---------------------------------------------------------------------------------------------------------------
// Reading files a user (or anyone who can put a file in a folder) hands us.

function kindOf(st: Stats): string {
  if (st.isDirectory()) return 'a folder';
  if (st.isFIFO()) return 'a named pipe';
  if (st.isSocket()) return 'a socket';
  if (st.isCharacterDevice() || st.isBlockDevice()) return 'a device';
  return 'not a regular file';
}

/**
 * Opens a file for reading only if it is a regular file (symlinks followed). A named pipe would block the open
 * until some writer comes, and a device or pipe may never end: O_NONBLOCK makes the open return at once, and fstat
 * of the opened descriptor decides, so the file cannot be swapped between the check and the read.
 */
export function openRegularFile(file: string): number {
  const fd = openSync(file, constants.O_RDONLY | (constants.O_NONBLOCK ?? 0));
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new Error(`${file}: ${kindOf(st)}, not a regular file; only regular files are read`);
  } catch (e) {
    closeSync(fd);
    throw e;
  }
  return fd;
}

/** The whole of a regular file (see openRegularFile). */
export function readRegularFile(file: string): Buffer {
  const fd = openRegularFile(file);
  try {
    return readFileSync(fd);
  } finally {
    closeSync(fd);
  }
}

/**
 * Where JSON text stops being JSON, and what was expected there: "line 2, column 7: expected ',' or '}'". Run once
 * JSON.parse has failed, whose own message quotes the text (`"root:x:0:0"... is not valid JSON`). Iterative, so
 * deep nesting cannot overflow the stack.
 */
export function jsonProblem(text: string): string {
  const n = text.length;
  let i = 0;
  const at = (what: string): string => {
    let line = 1,
      start = 0;
    for (let k = 0; k < i && k < n; k++)
      if (text.charCodeAt(k) === 10) {
        line++;
        start = k + 1;
      }
    return `line ${line}, column ${i - start + 1}: ${what}`;
  };
  const space = (): void => {
    while (i < n && (text[i] === ' ' || text[i] === '\t' || text[i] === '\n' || text[i] === '\r')) i++;
  };
  const digits = (): boolean => {
    const s = i;
    while (i < n && text[i] >= '0' && text[i] <= '9') i++;
    return i > s;
  };
  // Each returns a problem, or '' when the token was read.
  const string = (): string => {
    i++; // the opening quote
    for (;;) {
      if (i >= n) return at('the text ends inside a string');
      const c = text.charCodeAt(i);
      if (c === 34) {
        i++;
        return '';
      }
      if (c < 32) return at('a control character inside a string (it must be escaped)');
      if (c === 92) {
        const e = text[i + 1];
        if (e === 'u') {
          if (!/^[0-9a-fA-F]{4}$/.test(text.slice(i + 2, i + 6))) return at('expected four hex digits after \\u');
          i += 6;
        } else if (e !== undefined && '"\\/bfnrt'.includes(e)) i += 2;
        else return at('an invalid escape in a string');
      } else i++;
    }
  };
  const number = (): string => {
    if (text[i] === '-') i++;
    if (text[i] === '0') i++;
    else if (!digits()) return at('expected a digit');
    if (text[i] === '.') {
      i++;
      if (!digits()) return at('expected a digit after the decimal point');
    }
    if (text[i] === 'e' || text[i] === 'E') {
      i++;
      if (text[i] === '+' || text[i] === '-') i++;
      if (!digits()) return at('expected a digit in the exponent');
    }
    return '';
  };
  const key = (): string => {
    space();
    if (text[i] !== '"')
      return at(i >= n ? 'the text ends where a property name should be' : 'expected a property name in double quotes');
    const bad = string();
    if (bad) return bad;
    space();
    if (text[i] !== ':') return at("expected ':' after a property name");
    i++;
    return '';
  };
  if (text.charCodeAt(0) === 0xfeff)
    return at('a byte-order mark (BOM) before the JSON; save the file as UTF-8 without BOM');
  const open: string[] = [];
  for (;;) {
    // A value.
    space();
    if (i >= n) return at('the text ends where a value should be');
    const c = text[i];
    let bad = '';
    if (c === '{' || c === '[') {
      i++;
      space();
      if (text[i] === (c === '{' ? '}' : ']')) i++;
      else {
        open.push(c);
        if (c === '{' && (bad = key())) return bad;
        continue;
      }
    } else if (c === '"') bad = string();
    else if (c === '-' || (c >= '0' && c <= '9')) bad = number();
    else {
      const word = ['true', 'false', 'null'].find((w) => text.startsWith(w, i));
      if (!word) return at('expected a value (an object, list, string, number, true, false or null)');
      i += word.length;
    }
    if (bad) return bad;
    // After a value: close what it ends, or go on to the next one.
    for (;;) {
      space();
      const top = open[open.length - 1];
      if (top === undefined) return i < n ? at('more text after the JSON value') : 'not valid JSON';
      const close = top === '{' ? '}' : ']';
      if (text[i] === close) {
        open.pop();
        i++;
        continue;
      }
      if (text[i] !== ',')
        return at(i >= n ? `the text ends before the closing '${close}'` : `expected ',' or '${close}'`);
      i++;
      if (top === '{' && (bad = key())) return bad;
      break;
    }
  }
}

/** JSON.parse whose error names `where` and the place of the problem, never the text. */
export function parseJson(text: string, where: string): unknown {
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new Error(`${where}: not valid JSON (${jsonProblem(text)})`, { cause: e });
  }
}

/** A regular file's JSON (see readRegularFile and parseJson). */
export function readJsonFile(file: string): unknown {
  return parseJson(readRegularFile(file).toString('utf8'), file);
}

/**
 * A name-like value read from a file (a model_type, peft_type or task_type): quoted when it is a short word, as such
 * settings are ("mamba", "LORA"), else described like any other value.
 */
export function describeName(v: unknown): string {
  return typeof v === 'string' && /^[\w.-]{1,32}$/.test(v) ? `"${v}"` : describeValue(v);
}

/**
 * A value read from a file, described for an error without quoting its text: numbers, booleans and short lists of
 * numbers as they are (sizes, shapes), the rest by kind ("a string of 12 characters").
 */
export function describeValue(v: unknown): string {
  if (v === null || typeof v === 'number' || typeof v === 'boolean') return String(v);
  if (typeof v === 'string') return `a string of ${v.length} character${v.length === 1 ? '' : 's'}`;
  if (Array.isArray(v))
    return v.length <= 8 && v.every((x) => typeof x === 'number') ? JSON.stringify(v) : `a list of ${v.length} items`;
  return v === undefined ? 'nothing' : 'an object';
}

// ---------------------------------------------------------------------------------------------------------------
// safetensors

const MAX_HEADER = 100 * 1024 * 1024;

export function readSafetensorsHeader(file: string): SafetensorsFile {
  const realFile = realpathSync(file);
  const fd = openRegularFile(realFile);
  try {
    const size = fstatSync(fd).size;
    if (size < 8)
      throw new Error(`${file}: not a safetensors file (${size} bytes, the 8-byte header length is missing)`);
    const lenBuf = Buffer.alloc(8);
    readSync(fd, lenBuf, 0, 8, 0);
    const headerLen = lenBuf.readBigUInt64LE(0);
    if (headerLen > BigInt(MAX_HEADER)) {
      throw new Error(
        `${file}: bad safetensors header: it claims ${headerLen} header bytes, more than the ${MAX_HEADER / 1024 / 1024} MiB limit`,
      );
    }
    if (headerLen > BigInt(size - 8)) {
      throw new Error(
        `${file}: bad safetensors header: it claims ${headerLen} header bytes but the file has ${size - 8} after the length field`,
      );
    }
    const hl = Number(headerLen);
    const hbuf = Buffer.alloc(hl);
    readSync(fd, hbuf, 0, hl, 8);
    const header = parseJson(hbuf.toString('utf8'), `${file}: bad safetensors header`);
    if (typeof header !== 'object' || header === null || Array.isArray(header)) {
      throw new Error(`${file}: bad safetensors header: expected a JSON object`);
    }
    const payload = size - 8 - hl;
    const tensors = new Map<string, TensorRef>();
    let metadata: Record<string, string> = {};
    const spans: [number, number, string][] = [];
    for (const [name, entry] of Object.entries(header as Record<string, unknown>)) {
      if (name === '__metadata__') {
        if (typeof entry !== 'object' || entry === null || Array.isArray(entry))
          throw new Error(`${file}: __metadata__ must be an object of strings`);
        for (const [k, v] of Object.entries(entry)) {
          if (typeof v !== 'string') throw new Error(`${file}: __metadata__.${k} must be a string, got ${typeof v}`);
        }
        // JSON.parse's own object: every key stays a data property, "__proto__" included.
        metadata = entry as Record<string, string>;
        continue;
      }
      const where = `${file}: tensor "${name}"`;
      const e = entry as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
      if (typeof e !== 'object' || e === null) throw new Error(`${where}: expected {dtype, shape, data_offsets}`);
      if (typeof e.dtype !== 'string') throw new Error(`${where}: missing dtype`);
      const dtype = dtypeFromSafetensors(e.dtype, where);
      if (!Array.isArray(e.shape) || !e.shape.every((d) => Number.isInteger(d) && d >= 0)) {
        throw new Error(`${where}: shape must be a list of non-negative integers, got ${describeValue(e.shape)}`);
      }
      const offs = e.data_offsets;
      if (
        !Array.isArray(offs) ||
        offs.length !== 2 ||
        !offs.every((d) => Number.isInteger(d) && d >= 0) ||
        offs[1] < offs[0]
      ) {
        throw new Error(`${where}: data_offsets must be [start, end] with start <= end, got ${describeValue(offs)}`);
      }
      const shape = e.shape as number[];
      const numel = shape.reduce((a, b) => a * b, 1);
      const length = offs[1] - offs[0];
      if (length !== numel * bytesOf(dtype)) {
        throw new Error(
          `${where}: ${length} bytes for shape [${shape}] of ${e.dtype}, expected ${numel * bytesOf(dtype)}`,
        );
      }
      if (offs[1] > payload) {
        throw new Error(
          `${where}: truncated payload: its bytes end at ${offs[1]} but the file holds only ${payload} bytes of data`,
        );
      }
      spans.push([offs[0], offs[1], name]);
      tensors.set(name, { name, dtype, shape, file, realFile, offset: 8 + hl + offs[0], length });
    }
    spans.sort((a, b) => a[0] - b[0]);
    for (let i = 1; i < spans.length; i++) {
      if (spans[i][0] < spans[i - 1][1])
        throw new Error(`${file}: tensors "${spans[i - 1][2]}" and "${spans[i][2]}" overlap`);
    }
    return { file, realFile, tensors, metadata, headerBytes: 8 + hl };
  } finally {
    closeSync(fd);
  }
}

export function readTensorBytes(ref: TensorRef): Uint8Array {
  const out = new Uint8Array(ref.length);
  const fd = openRegularFile(ref.realFile);
  try {
    let got = 0;
    while (got < ref.length) {
      const n = readSync(fd, out, got, ref.length - got, ref.offset + got);
      if (n === 0)
        throw new Error(`${ref.file}: tensor "${ref.name}" is truncated (read ${got} of ${ref.length} bytes)`);
      got += n;
    }
  } finally {
    closeSync(fd);
  }
  return out;
}

export interface TensorData {
  dtype: DType;
  shape: number[];
  /** Little-endian bytes, or a typed array whose bytes are taken as they are. */
  data: Uint8Array | ArrayBufferView;
}

/** The exact size of the safetensors file writeSafetensors would write for these tensors and metadata. */
export function safetensorsSize(
  tensors: { name: string; dtype: DType; shape: number[] }[],
  metadata: Record<string, string> = {},
): number {
  const header = Object.create(null) as Record<string, unknown>; // keeps a tensor named "__proto__" as one
  if (Object.keys(metadata).length) header.__metadata__ = metadata;
  let off = 0;
  for (const t of [...tensors].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
    const n = t.shape.reduce((a, b) => a * b, 1) * bytesOf(t.dtype);
    header[t.name] = { dtype: DTYPES[t.dtype].safetensors, shape: t.shape, data_offsets: [off, off + n] };
    off += n;
  }
  const json = Buffer.byteLength(JSON.stringify(header));
  return 8 + json + ((8 - ((8 + json) % 8)) % 8) + off;
}

/** Writes a safetensors file atomically. Tensors are laid out in name order; the header is padded to 8 bytes. */
export function writeSafetensors(
  file: string,
  tensors: Record<string, TensorData>,
  metadata: Record<string, string> = {},
): void {
  const names = Object.keys(tensors).sort();
  const header = Object.create(null) as Record<string, unknown>; // keeps a tensor named "__proto__" as one
  if (Object.keys(metadata).length) header.__metadata__ = metadata;
  const blobs: Uint8Array[] = [];
  let off = 0;
  for (const name of names) {
    const t = tensors[name];
    if (!Object.hasOwn(DTYPES, t.dtype))
      throw new Error(`writeSafetensors(${file}): tensor "${name}" has unknown dtype "${t.dtype}"`);
    const bytes = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
    const numel = t.shape.reduce((a, b) => a * b, 1);
    if (bytes.byteLength !== numel * bytesOf(t.dtype)) {
      throw new Error(
        `writeSafetensors(${file}): tensor "${name}" has ${bytes.byteLength} bytes, shape [${t.shape}] of ${t.dtype} needs ${numel * bytesOf(t.dtype)}`,
      );
    }
    header[name] = { dtype: DTYPES[t.dtype].safetensors, shape: t.shape, data_offsets: [off, off + bytes.byteLength] };
    blobs.push(bytes);
    off += bytes.byteLength;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - ((8 + Buffer.byteLength(json)) % 8)) % 8);
  const hbytes = Buffer.from(json, 'utf8');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(hbytes.byteLength));
  writeFileAtomic(file, [len, hbytes, ...blobs]);
}
