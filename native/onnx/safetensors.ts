// The safetensors format: 8-byte little-endian header length, a JSON header, then the raw tensor bytes.
import { closeSync, fstatSync, openSync, readSync, realpathSync } from 'node:fs';
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

const MAX_HEADER = 100 * 1024 * 1024;

export function readSafetensorsHeader(file: string): SafetensorsFile {
  const realFile = realpathSync(file);
  const fd = openSync(realFile, 'r');
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
    let header: unknown;
    try {
      header = JSON.parse(hbuf.toString('utf8'));
    } catch (e) {
      throw new Error(`${file}: bad safetensors header: not valid JSON (${(e as Error).message})`, { cause: e });
    }
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
        metadata = entry as Record<string, string>;
        continue;
      }
      const where = `${file}: tensor "${name}"`;
      const e = entry as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
      if (typeof e !== 'object' || e === null) throw new Error(`${where}: expected {dtype, shape, data_offsets}`);
      if (typeof e.dtype !== 'string') throw new Error(`${where}: missing dtype`);
      const dtype = dtypeFromSafetensors(e.dtype, where);
      if (!Array.isArray(e.shape) || !e.shape.every((d) => Number.isInteger(d) && d >= 0)) {
        throw new Error(`${where}: shape must be a list of non-negative integers, got ${JSON.stringify(e.shape)}`);
      }
      const offs = e.data_offsets;
      if (
        !Array.isArray(offs) ||
        offs.length !== 2 ||
        !offs.every((d) => Number.isInteger(d) && d >= 0) ||
        offs[1] < offs[0]
      ) {
        throw new Error(`${where}: data_offsets must be [start, end] with start <= end, got ${JSON.stringify(offs)}`);
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
  const fd = openSync(ref.realFile, 'r');
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
  const header: Record<string, unknown> = {};
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
  const header: Record<string, unknown> = {};
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
