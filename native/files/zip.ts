// A zip writer and reader of our own (PKWARE APPNOTE 6.3): stored or deflated entries, UTF-8 names, CRC-32, ZIP64.
// Writing streams to a temp file in pieces (entries from disk are never read whole) and renames it into place;
// extracting checks every name before writing anything, checks CRC and sizes, and renames a finished temp folder.
import {
  closeSync,
  createReadStream,
  createWriteStream,
  fstatSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readdirSync,
  readSync,
  renameSync,
  rmdirSync,
  rmSync,
  statSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { constants as Z, crc32, createInflateRaw, deflateRawSync, inflateRawSync } from 'node:zlib';
import { isInside } from './paths.js';
import { tempName } from './temp.js';

export class ZipError extends Error {
  constructor(
    readonly archive: string,
    readonly entry: string | undefined,
    message: string,
    options?: ErrorOptions,
  ) {
    super(`${archive}${entry === undefined ? '' : `: entry "${entry}"`}: ${message}`, options);
    this.name = 'ZipError';
  }
}

export type ZipData = Uint8Array | (() => Uint8Array) | { file: string };

export interface ZipEntryInput {
  /** Relative, forward slashes, no "..", "." or empty segments (parent folders are implied, not listed). */
  name: string;
  /** Bytes, a function called when the entry is written (so only one is in memory), or a file streamed from disk. */
  data: ZipData;
  /** Deflate (default) or store. Empty entries are always stored. */
  compress?: boolean;
  mtime?: Date;
}

export interface WriteZipOptions {
  /** Timestamp of every entry without its own: fix it for reproducible archives (default: now). */
  mtime?: Date;
  /** Test hook: ZIP64 records for every entry and the end record even when nothing needs them. */
  forceZip64?: boolean;
}

export interface ZipEntry {
  name: string;
  /** 0 stored, 8 deflated (others are listed but not extracted). */
  method: number;
  crc32: number;
  compressedSize: number;
  size: number;
  /** Offset of the entry's local header. */
  offset: number;
  flags: number;
  /** Unix mode from the external attributes (0 when the archive's maker did not record one). */
  mode: number;
  isDirectory: boolean;
  isSymlink: boolean;
  /** The central record carried a ZIP64 extra field. */
  zip64: boolean;
  mtime: Date;
}

const SIG_LOCAL = 0x04034b50;
const SIG_CENTRAL = 0x02014b50;
const SIG_END = 0x06054b50;
const SIG_END64 = 0x06064b50;
const SIG_LOCATOR64 = 0x07064b50;
const ZIP64_EXTRA = 0x0001;
const MAX32 = 0xffffffff;
const MAX16 = 0xffff;
const FLAG_UTF8 = 0x0800;
const FLAG_ENCRYPTED = 0x0001;
const STORE = 0;
const DEFLATE = 8;
const HOST_UNIX = 3;
const S_IFMT = 0o170000;
const S_IFLNK = 0o120000;
const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const CHUNK = 4 << 20;
const LOCAL_FIXED = 30;
const CENTRAL_FIXED = 46;
const END_FIXED = 22;

/** Why a name may not be an entry's, or null when it may (`dirOk`: a trailing "/" marks a folder entry). */
function badName(name: string, dirOk: boolean): string | null {
  if (name === '') return 'the name is empty';
  if (name.includes('\0')) return 'the name contains a NUL byte';
  if (name.includes('\\')) return 'the name contains a backslash (zip names use forward slashes)';
  if (name.startsWith('/')) return 'the name is an absolute path';
  if (/^[a-zA-Z]:/.test(name)) return 'the name starts with a drive letter';
  const parts = (dirOk && name.endsWith('/') ? name.slice(0, -1) : name).split('/');
  if (parts.includes('..')) return 'the name contains ".." (it would leave the destination)';
  if (parts.some((p) => p === '' || p === '.')) return 'the name has an empty or "." segment (or a trailing "/")';
  return null;
}

// --- writing -------------------------------------------------------------------------------------------------------

/** DOS date and time, from the UTC fields so that an archive's bytes do not depend on the writer's time zone. */
function dosDateTime(d: Date): { date: number; time: number } {
  let t = d.getTime();
  if (!Number.isFinite(t)) throw new Error(`writeZip: invalid mtime ${String(d)}`);
  t = Math.min(Math.max(t, Date.UTC(1980, 0, 1)), Date.UTC(2107, 11, 31, 23, 59, 58));
  const u = new Date(t);
  return {
    date: ((u.getUTCFullYear() - 1980) << 9) | ((u.getUTCMonth() + 1) << 5) | u.getUTCDate(),
    time: (u.getUTCHours() << 11) | (u.getUTCMinutes() << 5) | (u.getUTCSeconds() >> 1),
  };
}

function fromDos(date: number, time: number): Date {
  return new Date(
    Date.UTC(1980 + (date >> 9), ((date >> 5) & 15) - 1, date & 31, time >> 11, (time >> 5) & 63, (time & 31) * 2),
  );
}

/** Sequential writes through a 1 MiB buffer, plus patches at earlier positions (local headers, once sizes are known). */
class Sink {
  pos = 0;
  private flushed = 0;
  private buf = Buffer.alloc(1 << 20);
  private used = 0;
  constructor(private fd: number) {}

  write(bytes: Uint8Array): void {
    if (bytes.byteLength >= this.buf.length) {
      this.flush();
      this.raw(bytes, this.pos);
    } else {
      if (this.used + bytes.byteLength > this.buf.length) this.flush();
      this.buf.set(bytes, this.used);
      this.used += bytes.byteLength;
    }
    this.pos += bytes.byteLength;
    if (this.used === 0) this.flushed = this.pos;
  }

  patch(at: number, bytes: Uint8Array): void {
    if (at + bytes.byteLength > this.flushed) this.flush();
    this.raw(bytes, at);
  }

  flush(): void {
    this.raw(this.buf.subarray(0, this.used), this.flushed);
    this.used = 0;
    this.flushed = this.pos;
  }

  private raw(bytes: Uint8Array, at: number): void {
    for (let off = 0; off < bytes.byteLength;) off += writeSync(this.fd, bytes, off, bytes.byteLength - off, at + off);
  }
}

/** An upper bound on the deflated size of `size` bytes fed in CHUNK pieces (zlib's deflateBound plus each sync flush). */
function deflateBound(size: number): number {
  const chunks = Math.max(1, Math.ceil(size / CHUNK));
  return size + Math.ceil(size / 4096) + Math.ceil(size / 16384) + chunks * 32;
}

interface Written {
  name: Buffer;
  method: number;
  crc: number;
  size: number;
  compressedSize: number;
  offset: number;
  date: number;
  time: number;
  localZip64: boolean;
}

function localHeader(w: Written): Buffer {
  const extra = w.localZip64 ? 20 : 0;
  const h = Buffer.alloc(LOCAL_FIXED + w.name.length + extra);
  h.writeUInt32LE(SIG_LOCAL, 0);
  h.writeUInt16LE(w.localZip64 ? 45 : 20, 4);
  h.writeUInt16LE(FLAG_UTF8, 6);
  h.writeUInt16LE(w.method, 8);
  h.writeUInt16LE(w.time, 10);
  h.writeUInt16LE(w.date, 12);
  h.writeUInt32LE(w.crc, 14);
  // With ZIP64 the local extra must hold both sizes and the 32-bit fields say "look there".
  h.writeUInt32LE(w.localZip64 ? MAX32 : w.compressedSize, 18);
  h.writeUInt32LE(w.localZip64 ? MAX32 : w.size, 22);
  h.writeUInt16LE(w.name.length, 26);
  h.writeUInt16LE(extra, 28);
  w.name.copy(h, LOCAL_FIXED);
  if (w.localZip64) {
    const x = LOCAL_FIXED + w.name.length;
    h.writeUInt16LE(ZIP64_EXTRA, x);
    h.writeUInt16LE(16, x + 2);
    h.writeBigUInt64LE(BigInt(w.size), x + 4);
    h.writeBigUInt64LE(BigInt(w.compressedSize), x + 12);
  }
  return h;
}

function centralHeader(w: Written, force: boolean): Buffer {
  // Sizes go to the extra field when the local header put them there (the two must agree) or they do not fit.
  const sizes64 = w.localZip64 || w.size >= MAX32 || w.compressedSize >= MAX32;
  const offset64 = force || w.offset >= MAX32;
  const fields = [...(sizes64 ? [w.size, w.compressedSize] : []), ...(offset64 ? [w.offset] : [])];
  const extra = fields.length ? 4 + 8 * fields.length : 0;
  const version = fields.length ? 45 : 20;
  const h = Buffer.alloc(CENTRAL_FIXED + w.name.length + extra);
  h.writeUInt32LE(SIG_CENTRAL, 0);
  h.writeUInt16LE((HOST_UNIX << 8) | version, 4);
  h.writeUInt16LE(version, 6);
  h.writeUInt16LE(FLAG_UTF8, 8);
  h.writeUInt16LE(w.method, 10);
  h.writeUInt16LE(w.time, 12);
  h.writeUInt16LE(w.date, 14);
  h.writeUInt32LE(w.crc, 16);
  h.writeUInt32LE(sizes64 ? MAX32 : w.compressedSize, 20);
  h.writeUInt32LE(sizes64 ? MAX32 : w.size, 24);
  h.writeUInt16LE(w.name.length, 28);
  h.writeUInt16LE(extra, 30);
  // comment length, disk number start, internal attributes: 0
  h.writeUInt32LE(((S_IFREG | 0o644) << 16) >>> 0, 38);
  h.writeUInt32LE(offset64 ? MAX32 : w.offset, 42);
  w.name.copy(h, CENTRAL_FIXED);
  if (fields.length) {
    let x = CENTRAL_FIXED + w.name.length;
    h.writeUInt16LE(ZIP64_EXTRA, x);
    h.writeUInt16LE(8 * fields.length, x + 2);
    x += 4;
    for (const f of fields) {
      h.writeBigUInt64LE(BigInt(f), x);
      x += 8;
    }
  }
  return h;
}

function endRecords(count: number, cdOffset: number, cdSize: number, force: boolean): Buffer {
  const zip64 = force || count >= MAX16 || cdOffset >= MAX32 || cdSize >= MAX32;
  const parts: Buffer[] = [];
  if (zip64) {
    const rec = Buffer.alloc(56);
    rec.writeUInt32LE(SIG_END64, 0);
    rec.writeBigUInt64LE(44n, 4); // size of the rest of this record
    rec.writeUInt16LE((HOST_UNIX << 8) | 45, 12);
    rec.writeUInt16LE(45, 14);
    // this disk, disk of the central directory: 0
    rec.writeBigUInt64LE(BigInt(count), 24);
    rec.writeBigUInt64LE(BigInt(count), 32);
    rec.writeBigUInt64LE(BigInt(cdSize), 40);
    rec.writeBigUInt64LE(BigInt(cdOffset), 48);
    const loc = Buffer.alloc(20);
    loc.writeUInt32LE(SIG_LOCATOR64, 0);
    loc.writeBigUInt64LE(BigInt(cdOffset + cdSize), 8);
    loc.writeUInt32LE(1, 16); // total disks
    parts.push(rec, loc);
  }
  const end = Buffer.alloc(END_FIXED);
  end.writeUInt32LE(SIG_END, 0);
  const n = force || count >= MAX16 ? MAX16 : count;
  end.writeUInt16LE(n, 8);
  end.writeUInt16LE(n, 10);
  end.writeUInt32LE(force || cdSize >= MAX32 ? MAX32 : cdSize, 12);
  end.writeUInt32LE(force || cdOffset >= MAX32 ? MAX32 : cdOffset, 16);
  parts.push(end);
  return Buffer.concat(parts);
}

/** Calls `each` with successive pieces of the entry's data, at most CHUNK bytes each, `last` on the final one. */
function forEachPiece(
  archive: string,
  e: ZipEntryInput & { data: Uint8Array | { file: string } },
  each: (piece: Uint8Array, last: boolean) => void,
): void {
  if (e.data instanceof Uint8Array) {
    const bytes = e.data;
    if (bytes.byteLength === 0) each(bytes, true);
    for (let off = 0; off < bytes.byteLength; off += CHUNK)
      each(bytes.subarray(off, off + CHUNK), off + CHUNK >= bytes.byteLength);
    return;
  }
  const src = e.data.file;
  const fd = openSync(src, 'r');
  try {
    const size = fstatSync(fd).size;
    const buf = Buffer.alloc(Math.min(CHUNK, Math.max(size, 1)));
    let done = 0;
    if (size === 0) each(buf.subarray(0, 0), true);
    while (done < size) {
      const n = readSync(fd, buf, 0, Math.min(buf.length, size - done), done);
      if (n === 0)
        throw new ZipError(archive, e.name, `${src} shrank while it was being added (${done} of ${size} bytes read)`);
      done += n;
      each(buf.subarray(0, n), done === size);
    }
    if (fstatSync(fd).size !== size)
      throw new ZipError(archive, e.name, `${src} changed size while it was being added`);
  } finally {
    closeSync(fd);
  }
}

function writeEntry(archive: string, sink: Sink, input: ZipEntryInput, opts: WriteZipOptions): Written {
  // A function's size is known only once called: call it now, so the ZIP64 decision below can see it.
  let data = input.data;
  if (typeof data === 'function') {
    data = data();
    if (!(data instanceof Uint8Array))
      throw new ZipError(archive, input.name, 'its data function did not return a Uint8Array');
  }
  const e = { ...input, data };
  const size = data instanceof Uint8Array ? data.byteLength : statSync(data.file).size;
  const method = e.compress !== false && size > 0 ? DEFLATE : STORE;
  const bound = method === DEFLATE ? deflateBound(size) : size;
  const w: Written = {
    name: Buffer.from(e.name, 'utf8'),
    method,
    crc: 0,
    size: 0,
    compressedSize: 0,
    offset: sink.pos,
    ...dosDateTime(e.mtime ?? opts.mtime ?? new Date()),
    localZip64: !!opts.forceZip64 || bound >= MAX32,
  };
  const header = localHeader(w);
  sink.write(header);
  forEachPiece(archive, e, (piece, last) => {
    w.crc = crc32(piece, w.crc);
    w.size += piece.byteLength;
    // Each piece is its own deflate stream ended by a sync flush (no final bit) and the last one by Z_FINISH: their
    // concatenation is one valid deflate stream, and memory stays at one piece whatever the entry's size.
    const out = method === DEFLATE ? deflateRawSync(piece, { finishFlush: last ? Z.Z_FINISH : Z.Z_SYNC_FLUSH }) : piece;
    w.compressedSize += out.byteLength;
    sink.write(out);
  });
  if (w.size !== size)
    throw new ZipError(archive, e.name, `its source changed size while being added (${size} → ${w.size} bytes)`);
  if (!w.localZip64 && w.compressedSize >= MAX32)
    throw new ZipError(
      archive,
      e.name,
      `deflated to ${w.compressedSize} bytes, over the bound ${bound} its ZIP64 choice was made on`,
    );
  const final = localHeader(w);
  if (final.length !== header.length) throw new Error('writeZip: local header changed length'); // cannot happen: same name and extra
  sink.patch(w.offset, final);
  return w;
}

/**
 * Writes a zip archive to `file` atomically: a temp file in the same folder, fsynced, then renamed over `file`.
 * Entries are written in the order given; identical inputs (with fixed mtimes) give identical bytes.
 */
export function writeZip(
  file: string,
  entries: ZipEntryInput[],
  opts: WriteZipOptions = {},
): { size: number; entries: number } {
  const seen = new Set<string>();
  for (const e of entries) {
    const why = badName(e.name, false);
    if (why) throw new ZipError(file, e.name, `refused: ${why}`);
    if (Buffer.byteLength(e.name) > MAX16)
      throw new ZipError(file, e.name.slice(0, 40) + '…', 'refused: the name is longer than 65535 bytes');
    if (seen.has(e.name)) throw new ZipError(file, e.name, 'refused: two entries have this name');
    seen.add(e.name);
  }
  const tmp = join(dirname(file), tempName(basename(file)));
  const fd = openSync(tmp, 'wx', 0o644);
  let closed = false;
  try {
    const sink = new Sink(fd);
    const written = entries.map((e) => writeEntry(file, sink, e, opts));
    const cdOffset = sink.pos;
    for (const w of written) sink.write(centralHeader(w, !!opts.forceZip64));
    const cdSize = sink.pos - cdOffset;
    sink.write(endRecords(written.length, cdOffset, cdSize, !!opts.forceZip64));
    sink.flush();
    fsyncSync(fd);
    closeSync(fd);
    closed = true;
    renameSync(tmp, file);
    try {
      const dfd = openSync(dirname(file), 'r');
      try {
        fsyncSync(dfd);
      } finally {
        closeSync(dfd);
      }
    } catch {
      /* some filesystems refuse fsync on directories */
    }
    return { size: sink.pos, entries: written.length };
  } catch (e) {
    if (!closed) closeSync(fd);
    try {
      unlinkSync(tmp);
    } catch {
      /* already gone */
    }
    throw e;
  }
}

// --- reading -------------------------------------------------------------------------------------------------------

function readAt(fd: number, at: number, length: number): Buffer {
  const b = Buffer.alloc(length);
  let got = 0;
  while (got < length) {
    const n = readSync(fd, b, got, length - got, at + got);
    if (n === 0) break;
    got += n;
  }
  return got === length ? b : b.subarray(0, got);
}

function u64(b: Buffer, at: number, archive: string, what: string): number {
  const v = b.readBigUInt64LE(at);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new ZipError(archive, undefined, `${what} ${v} is too large`);
  return Number(v);
}

function decodeName(bytes: Buffer, utf8: boolean): string {
  if (utf8) return bytes.toString('utf8');
  // Without the UTF-8 flag the name is nominally CP437, but many tools write UTF-8 anyway: take it when valid.
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    return bytes.toString('latin1');
  }
}

interface Directory {
  entries: ZipEntry[];
  fileSize: number;
  /** Where the central directory starts: entries' data must end before it. */
  cdOffset: number;
}

function readDirectory(file: string, fd: number): Directory {
  const fileSize = fstatSync(fd).size;
  if (fileSize < END_FIXED)
    throw new ZipError(file, undefined, `not a zip archive (${fileSize} bytes, too short for an end record)`);
  const tailLen = Math.min(fileSize, END_FIXED + MAX16);
  const tail = readAt(fd, fileSize - tailLen, tailLen);
  let endAt = -1;
  // The end record is the last thing in the file but for its comment, whose length it gives.
  for (let i = tail.length - END_FIXED; i >= 0; i--) {
    if (tail.readUInt32LE(i) === SIG_END && i + END_FIXED + tail.readUInt16LE(i + 20) === tail.length) {
      endAt = i;
      break;
    }
  }
  if (endAt < 0)
    throw new ZipError(file, undefined, 'not a zip archive, or truncated: no end of central directory record');
  const endPos = fileSize - tailLen + endAt;
  const disk = tail.readUInt16LE(endAt + 4);
  const cdDisk = tail.readUInt16LE(endAt + 6);
  let count = tail.readUInt16LE(endAt + 10);
  let cdSize = tail.readUInt32LE(endAt + 12);
  let cdOffset = tail.readUInt32LE(endAt + 16);
  let cdEnd = endPos;
  if (endPos >= 20) {
    const loc = readAt(fd, endPos - 20, 20);
    if (loc.readUInt32LE(0) === SIG_LOCATOR64) {
      if (loc.readUInt32LE(16) > 1 || loc.readUInt32LE(4) !== 0)
        throw new ZipError(file, undefined, 'multi-disk (split) archives are not supported');
      const recAt = u64(loc, 8, file, 'ZIP64 end record offset');
      const rec = readAt(fd, recAt, 56);
      if (rec.length < 56 || rec.readUInt32LE(0) !== SIG_END64)
        throw new ZipError(file, undefined, `the ZIP64 locator points at ${recAt}, where there is no ZIP64 end record`);
      if (rec.readUInt32LE(16) !== 0 || rec.readUInt32LE(20) !== 0)
        throw new ZipError(file, undefined, 'multi-disk (split) archives are not supported');
      count = u64(rec, 32, file, 'entry count');
      cdSize = u64(rec, 40, file, 'central directory size');
      cdOffset = u64(rec, 48, file, 'central directory offset');
      cdEnd = recAt;
    }
  }
  if (cdEnd === endPos && (disk !== 0 || cdDisk !== 0))
    throw new ZipError(file, undefined, 'multi-disk (split) archives are not supported');
  if (cdOffset + cdSize > cdEnd)
    throw new ZipError(
      file,
      undefined,
      `the central directory (${cdSize} bytes at ${cdOffset}) runs past its end records at ${cdEnd}: truncated or damaged`,
    );
  const cd = readAt(fd, cdOffset, cdSize);
  const entries: ZipEntry[] = [];
  let p = 0;
  for (let i = 0; i < count; i++) {
    if (p + CENTRAL_FIXED > cd.length || cd.readUInt32LE(p) !== SIG_CENTRAL)
      throw new ZipError(file, undefined, `central directory record ${i} of ${count} is missing or damaged`);
    const madeBy = cd.readUInt16LE(p + 4);
    const flags = cd.readUInt16LE(p + 8);
    const method = cd.readUInt16LE(p + 10);
    const time = cd.readUInt16LE(p + 12);
    const date = cd.readUInt16LE(p + 14);
    const crc = cd.readUInt32LE(p + 16);
    let compressedSize = cd.readUInt32LE(p + 20);
    let size = cd.readUInt32LE(p + 24);
    const nameLen = cd.readUInt16LE(p + 28);
    const extraLen = cd.readUInt16LE(p + 30);
    const commentLen = cd.readUInt16LE(p + 32);
    const diskStart = cd.readUInt16LE(p + 34);
    const external = cd.readUInt32LE(p + 38);
    let offset = cd.readUInt32LE(p + 42);
    const next = p + CENTRAL_FIXED + nameLen + extraLen + commentLen;
    if (next > cd.length)
      throw new ZipError(file, undefined, `central directory record ${i} runs past the directory's end`);
    const name = decodeName(cd.subarray(p + CENTRAL_FIXED, p + CENTRAL_FIXED + nameLen), (flags & FLAG_UTF8) !== 0);
    let zip64 = false;
    const extra = cd.subarray(p + CENTRAL_FIXED + nameLen, p + CENTRAL_FIXED + nameLen + extraLen);
    for (let x = 0; x + 4 <= extra.length;) {
      const id = extra.readUInt16LE(x);
      const len = extra.readUInt16LE(x + 2);
      if (id === ZIP64_EXTRA) {
        zip64 = true;
        // Only the fields whose 32-bit slot holds the sentinel are present, in this fixed order.
        let q = x + 4;
        const take = (what: string): number => {
          if (q + 8 > x + 4 + len) throw new ZipError(file, name, `its ZIP64 extra field lacks the ${what}`);
          const v = u64(extra, q, file, what);
          q += 8;
          return v;
        };
        if (size === MAX32) size = take('uncompressed size');
        if (compressedSize === MAX32) compressedSize = take('compressed size');
        if (offset === MAX32) offset = take('local header offset');
      }
      x += 4 + len;
    }
    if (diskStart !== 0 && diskStart !== MAX16)
      throw new ZipError(file, name, 'it lies on another disk of a split archive (not supported)');
    const host = madeBy >> 8;
    const mode = host === HOST_UNIX || external >>> 16 !== 0 ? external >>> 16 : 0;
    entries.push({
      name,
      method,
      crc32: crc,
      compressedSize,
      size,
      offset,
      flags,
      mode,
      zip64,
      mtime: fromDos(date, time),
      isDirectory: name.endsWith('/') || (mode & S_IFMT) === S_IFDIR || (external & 0x10) !== 0,
      isSymlink: (mode & S_IFMT) === S_IFLNK,
    });
    p = next;
  }
  return { entries, fileSize, cdOffset };
}

/** The entries of a zip archive, from its central directory (ZIP64 included). */
export function readZip(file: string): ZipEntry[] {
  const fd = openSync(file, 'r');
  try {
    return readDirectory(file, fd).entries;
  } finally {
    closeSync(fd);
  }
}

/** Where an entry's data starts, from its local header (checked against the central record). */
function dataStart(file: string, fd: number, e: ZipEntry, dir: Directory): number {
  const h = readAt(fd, e.offset, LOCAL_FIXED);
  if (h.length < LOCAL_FIXED || h.readUInt32LE(0) !== SIG_LOCAL)
    throw new ZipError(file, e.name, `no local header at offset ${e.offset}`);
  const nameLen = h.readUInt16LE(26);
  const name = readAt(fd, e.offset + LOCAL_FIXED, nameLen);
  if (decodeName(name, (h.readUInt16LE(6) & FLAG_UTF8) !== 0) !== e.name)
    throw new ZipError(file, e.name, 'its local header names another entry: the archive is damaged or crafted');
  const start = e.offset + LOCAL_FIXED + nameLen + h.readUInt16LE(28);
  if (start + e.compressedSize > dir.cdOffset)
    throw new ZipError(
      file,
      e.name,
      `its ${e.compressedSize} bytes at ${start} run into the central directory: truncated or damaged`,
    );
  return start;
}

/** Counts and checksums an entry's output, failing as soon as it exceeds the declared size (a zip bomb stops early). */
class Check extends Transform {
  crc = 0;
  n = 0;
  constructor(
    private archive: string,
    private entry: ZipEntry,
  ) {
    super();
  }
  _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.n += chunk.length;
    if (this.n > this.entry.size)
      return cb(
        new ZipError(this.archive, this.entry.name, `holds more than the ${this.entry.size} bytes its header declares`),
      );
    this.crc = crc32(chunk, this.crc);
    cb(null, chunk);
  }
}

function unpackError(archive: string, e: ZipEntry, err: unknown): Error {
  if (err instanceof ZipError) return err;
  return new ZipError(archive, e.name, `cannot be unpacked: ${(err as Error).message}`, { cause: err });
}

async function unpack(file: string, e: ZipEntry, start: number, out: string): Promise<void> {
  const check = new Check(file, e);
  const sink = createWriteStream(out, { flags: 'wx', mode: 0o644 });
  try {
    const src =
      e.compressedSize > 0
        ? createReadStream(file, { start, end: start + e.compressedSize - 1, highWaterMark: 1 << 20 })
        : (async function* () {
            /* nothing */
          })();
    if (e.method === DEFLATE) await pipeline(src, createInflateRaw(), check, sink);
    else await pipeline(src, check, sink);
  } catch (err) {
    throw unpackError(file, e, err);
  }
  if (check.n !== e.size)
    throw new ZipError(
      file,
      e.name,
      `unpacked to ${check.n} bytes, its header declares ${e.size}: truncated or damaged`,
    );
  if (check.crc !== e.crc32)
    throw new ZipError(
      file,
      e.name,
      `CRC-32 mismatch (data ${check.crc.toString(16).padStart(8, '0')}, header ${e.crc32.toString(16).padStart(8, '0')}): the archive is damaged`,
    );
}

/**
 * Extracts every entry into `destDir`, which must not exist or be an empty folder. All names are checked before
 * anything is written (absolute, "..", backslashes, drive letters, symlinks, duplicates are refused); the entries are
 * unpacked into a temp folder beside it, CRC and sizes checked, and the folder renamed to `destDir` only when all are good.
 */
export async function extractZip(file: string, destDir: string): Promise<{ dir: string; entries: ZipEntry[] }> {
  const dest = resolve(destDir);
  const fd = openSync(file, 'r');
  let dir: Directory;
  try {
    dir = readDirectory(file, fd);
  } finally {
    closeSync(fd);
  }
  const seen = new Set<string>();
  for (const e of dir.entries) {
    const why = badName(e.name, true);
    if (why) throw new ZipError(file, e.name, `refused: ${why}`);
    if (e.isSymlink) throw new ZipError(file, e.name, 'refused: it is a symbolic link');
    const key = e.name.replace(/\/$/, '');
    if (seen.has(key)) throw new ZipError(file, e.name, 'refused: the archive holds two entries with this name');
    seen.add(key);
    if (e.isDirectory) continue;
    if (e.flags & FLAG_ENCRYPTED) throw new ZipError(file, e.name, 'it is encrypted (not supported)');
    if (e.method !== STORE && e.method !== DEFLATE)
      throw new ZipError(file, e.name, `compression method ${e.method} is not supported (only stored and deflated)`);
  }
  let destEmpty = false;
  try {
    const st = statSync(dest);
    if (!st.isDirectory() || readdirSync(dest).length > 0)
      throw new ZipError(file, undefined, `cannot extract into ${dest}: it exists and is not an empty folder`);
    destEmpty = true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  const tmp = join(dirname(dest), tempName(basename(dest)));
  mkdirSync(tmp);
  try {
    const rfd = openSync(file, 'r');
    const starts = new Map<ZipEntry, number>();
    try {
      for (const e of dir.entries) if (!e.isDirectory) starts.set(e, dataStart(file, rfd, e, dir));
    } finally {
      closeSync(rfd);
    }
    for (const e of dir.entries) {
      const out = join(tmp, ...e.name.replace(/\/$/, '').split('/'));
      if (!isInside(tmp, out)) throw new ZipError(file, e.name, 'refused: it would be written outside the destination'); // belt and braces
      if (e.isDirectory) {
        try {
          mkdirSync(out, { recursive: true });
        } catch (err) {
          throw unpackError(file, e, err);
        }
        continue;
      }
      try {
        mkdirSync(dirname(out), { recursive: true });
        await unpack(file, e, starts.get(e)!, out);
      } catch (err) {
        throw unpackError(file, e, err);
      }
    }
    if (destEmpty) rmdirSync(dest);
    renameSync(tmp, dest);
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
  return { dir: dest, entries: dir.entries };
}

/** One entry's bytes, checked (for small entries: tests, metadata files). */
export function readZipEntry(file: string, name: string): Buffer {
  const fd = openSync(file, 'r');
  try {
    const dir = readDirectory(file, fd);
    const e = dir.entries.find((x) => x.name === name);
    if (!e) throw new ZipError(file, name, 'no such entry');
    if (e.method !== STORE && e.method !== DEFLATE)
      throw new ZipError(file, name, `compression method ${e.method} is not supported`);
    const raw = readAt(fd, dataStart(file, fd, e, dir), e.compressedSize);
    let data: Buffer;
    try {
      data = e.method === DEFLATE ? inflateRawSyncChecked(raw, e.size) : raw;
    } catch (err) {
      throw unpackError(file, e, err);
    }
    if (data.length !== e.size)
      throw new ZipError(file, name, `holds ${data.length} bytes, its header declares ${e.size}`);
    if (crc32(data) !== e.crc32) throw new ZipError(file, name, 'CRC-32 mismatch: the archive is damaged');
    return data;
  } finally {
    closeSync(fd);
  }
}

function inflateRawSyncChecked(raw: Buffer, size: number): Buffer {
  // maxOutputLength stops a bomb; one byte over the declared size is enough to report the mismatch.
  return inflateRawSync(raw, { maxOutputLength: Math.max(1, size + 1) });
}
