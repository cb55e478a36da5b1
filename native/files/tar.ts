// A streaming reader of tar archives of our own, gzipped or not (POSIX ustar, GNU long names 'L'/'K', pax 'x'
// extended headers for path/linkpath/size). The archive is read once, 512-byte blocks at a time, through
// zlib's gunzip: nothing holds more than one decompressed chunk (plus a bounded long name or pax header) in memory,
// so a 200 MB package is fine. Every header's checksum is checked. Extraction writes regular files (and folders) only,
// into a temp folder beside the destination that is renamed into place once the whole archive has been read:
// absolute names, "..", backslashes, drive letters, symlinks, hardlinks, device files and duplicates are refused,
// naming the entry, and on any failure nothing is left behind.
import {
  closeSync,
  createReadStream,
  mkdirSync,
  openSync,
  readdirSync,
  readSync,
  renameSync,
  rmdirSync,
  rmSync,
  statSync,
} from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { isInside } from './paths.js';
import { tempName } from './temp.js';

export class TarError extends Error {
  constructor(
    readonly archive: string,
    readonly entry: string | undefined,
    message: string,
    options?: ErrorOptions,
  ) {
    super(`${archive}${entry === undefined ? '' : `: entry "${entry}"`}: ${message}`, options);
    this.name = 'TarError';
  }
}

export type TarEntryType = 'file' | 'directory' | 'symlink' | 'hardlink' | 'other';

export interface TarEntry {
  /** The name as the archive gives it (after pax / GNU long-name / ustar-prefix resolution). */
  name: string;
  type: TarEntryType;
  /** The raw typeflag ('0', '5', '2', ...). */
  typeflag: string;
  size: number;
  mode: number;
  mtime: Date;
  linkname: string;
  /** Offset of the entry's header in the decompressed stream. */
  offset: number;
}

export interface TarReadOptions {
  /** Compressed bytes read so far and the archive's size, as it is read. */
  onProgress?: (bytes: number, total: number) => void;
}

export interface ExtractTarOptions extends TarReadOptions {
  /** Which entries to write (by their normalized name, no leading "./"); default all. Every entry's name and type
   *  is checked all the same: an archive with a dangerous entry is refused even when that entry is not wanted. */
  only?: (name: string) => boolean;
}

const BLOCK = 512;
/** Long names and pax headers larger than this are refused (a real one is a few hundred bytes). */
const MAX_META = 1 << 20;

/** Pulls exact byte counts out of an async stream of chunks without concatenating more than a block's remainder. */
class BlockReader {
  private buf: Buffer = Buffer.alloc(0);
  private done = false;
  /** Bytes consumed so far. */
  pos = 0;
  constructor(private readonly it: AsyncIterator<Buffer>) {}

  private async fill(): Promise<boolean> {
    if (this.done) return false;
    const r = await this.it.next();
    if (r.done) {
      this.done = true;
      return false;
    }
    const chunk = Buffer.isBuffer(r.value) ? r.value : Buffer.from(r.value as Uint8Array);
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    return true;
  }

  /** Exactly `n` bytes; null at a clean end of stream (no byte left); 'short' when it ends inside them. */
  async exact(n: number): Promise<Buffer | null | 'short'> {
    while (this.buf.length < n) {
      if (!(await this.fill())) return this.buf.length === 0 ? null : 'short';
    }
    const out = this.buf.subarray(0, n);
    this.buf = this.buf.subarray(n);
    this.pos += n;
    return out;
  }

  /** `n` bytes, in the pieces they arrive in; false when the stream ends first. */
  async pieces(n: number, each: (piece: Buffer) => Promise<void> | void): Promise<boolean> {
    while (n > 0) {
      if (this.buf.length === 0 && !(await this.fill())) return false;
      const take = Math.min(n, this.buf.length);
      const piece = this.buf.subarray(0, take);
      this.buf = this.buf.subarray(take);
      this.pos += take;
      n -= take;
      await each(piece);
    }
    return true;
  }
}

const str = (b: Buffer, off: number, len: number): string => {
  const s = b.subarray(off, off + len);
  const nul = s.indexOf(0);
  return (nul < 0 ? s : s.subarray(0, nul)).toString('utf8');
};

/** An octal field (NUL/space terminated), or a GNU base-256 number (high bit of the first byte set); NaN if neither. */
function num(b: Buffer, off: number, len: number): number {
  const f = b.subarray(off, off + len);
  if (f[0] & 0x80) {
    if (f[0] & 0x40) return NaN; // negative
    let v = f[0] & 0x3f;
    for (let i = 1; i < f.length; i++) v = v * 256 + f[i];
    return Number.isSafeInteger(v) ? v : NaN;
  }
  const s = f.toString('latin1').replace(/\0.*$/s, '').trim();
  if (s === '') return 0;
  return /^[0-7]+$/.test(s) ? parseInt(s, 8) : NaN;
}

/** The header checksum: the sum of its bytes with the checksum field read as spaces (unsigned; some old tars summed signed bytes). */
function checksums(h: Buffer): { unsigned: number; signed: number } {
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < BLOCK; i++) {
    const v = i >= 148 && i < 156 ? 0x20 : h[i];
    unsigned += v;
    signed += v > 127 ? v - 256 : v;
  }
  return { unsigned, signed };
}

/** pax extended header records: "<len> <key>=<value>\n", len counting the whole record. */
function parsePax(data: Buffer): Map<string, string> {
  const out = new Map<string, string>();
  let off = 0;
  while (off < data.length) {
    if (data[off] === 0) break; // padding
    const sp = data.indexOf(0x20, off);
    const len = sp < 0 ? NaN : Number(data.subarray(off, sp).toString('latin1'));
    if (!Number.isInteger(len) || len <= sp - off || off + len > data.length || data[off + len - 1] !== 0x0a)
      throw new Error('malformed pax record');
    const rec = data.subarray(sp + 1, off + len - 1).toString('utf8');
    const eq = rec.indexOf('=');
    if (eq <= 0) throw new Error('malformed pax record');
    out.set(rec.slice(0, eq), rec.slice(eq + 1));
    off += len;
  }
  return out;
}

const TYPES: Record<string, TarEntryType> = {
  '0': 'file',
  '\0': 'file',
  '7': 'file',
  '5': 'directory',
  '2': 'symlink',
  '1': 'hardlink',
};

/**
 * Reads the archive (gzip detected by its magic bytes) and calls `onEntry` for each entry with a sink for its data:
 * return a function to receive the data's pieces, or null to skip them. Meta entries (pax, GNU long names) are applied
 * to the entry they precede and not reported.
 */
async function walkTar(
  file: string,
  onEntry: (
    e: TarEntry,
  ) => Promise<((piece: Buffer) => Promise<void> | void) | null> | ((piece: Buffer) => Promise<void> | void) | null,
  opts: TarReadOptions = {},
): Promise<void> {
  const fd = openSync(file, 'r');
  const magic = Buffer.alloc(2);
  let total: number;
  try {
    readSync(fd, magic, 0, 2, 0);
    total = statSync(file).size;
  } finally {
    closeSync(fd);
  }
  const gz = magic[0] === 0x1f && magic[1] === 0x8b;
  let read = 0;
  const counter = new Transform({
    transform(chunk: Buffer, _enc, cb: TransformCallback) {
      read += chunk.length;
      opts.onProgress?.(read, total);
      cb(null, chunk);
    },
  });
  const consume = async (source: AsyncIterable<Buffer>): Promise<void> => {
    const r = new BlockReader(source[Symbol.asyncIterator]());
    let pax = new Map<string, string>();
    let longName: string | undefined;
    let longLink: string | undefined;
    for (;;) {
      const offset = r.pos;
      const h = await r.exact(BLOCK);
      if (h === null) return; // end of stream without the end-of-archive blocks: accepted, as GNU tar does
      if (h === 'short') throw new TarError(file, undefined, `truncated: it ends inside a header at offset ${offset}`);
      if (h.every((b) => b === 0)) {
        // End of archive (two zero blocks; one is accepted). Whatever follows is record padding.
        if (longName !== undefined || longLink !== undefined || pax.size)
          throw new TarError(file, undefined, 'the archive ends after an extended header with no entry');
        return;
      }
      const stored = num(h, 148, 8);
      const sum = checksums(h);
      if (stored !== sum.unsigned && stored !== sum.signed) {
        throw new TarError(
          file,
          undefined,
          `bad header checksum at offset ${offset} (stored ${Number.isNaN(stored) ? 'unreadable' : stored}, computed ${sum.unsigned}): the archive is damaged or not a tar archive`,
        );
      }
      const typeflag = String.fromCharCode(h[156]);
      const ustarMagic = h.subarray(257, 263).toString('latin1');
      let name = str(h, 0, 100);
      // POSIX ustar ("ustar\0"): a prefix before the name. GNU ("ustar  \0") uses that area for other fields.
      if (ustarMagic === 'ustar\0') {
        const prefix = str(h, 345, 155);
        if (prefix) name = `${prefix}/${name}`;
      }
      let size = num(h, 124, 12);
      if (Number.isNaN(size)) throw new TarError(file, name, `unreadable size field at offset ${offset}`);
      const paxSize = pax.get('size');
      if (paxSize !== undefined) {
        if (!/^\d+$/.test(paxSize) || !Number.isSafeInteger(Number(paxSize)))
          throw new TarError(file, name, `bad pax size "${paxSize}"`);
        size = Number(paxSize);
      }
      const padded = Math.ceil(size / BLOCK) * BLOCK;
      const readAll = async (what: string): Promise<Buffer> => {
        if (size > MAX_META) throw new TarError(file, name, `${what} of ${size} bytes is too large`);
        const d = await r.exact(padded);
        if (d === null || d === 'short') throw new TarError(file, name, `truncated inside its ${what}`);
        return Buffer.from(d.subarray(0, size));
      };
      if (typeflag === 'x' || typeflag === 'g') {
        const data = await readAll('pax header');
        let recs: Map<string, string>;
        try {
          recs = parsePax(data);
        } catch (e) {
          throw new TarError(file, name, (e as Error).message);
        }
        if (typeflag === 'x') pax = recs; // global headers ('g') are read and ignored: we use no field they may set
        continue;
      }
      if (typeflag === 'L' || typeflag === 'K') {
        const v = str(await readAll('GNU long name'), 0, size);
        if (typeflag === 'L') longName = v;
        else longLink = v;
        continue;
      }
      if (pax.has('path')) name = pax.get('path')!;
      else if (longName !== undefined) name = longName;
      let linkname = str(h, 157, 100);
      if (pax.has('linkpath')) linkname = pax.get('linkpath')!;
      else if (longLink !== undefined) linkname = longLink;
      pax = new Map();
      longName = undefined;
      longLink = undefined;
      const type = TYPES[typeflag] ?? 'other';
      // Links, folders and devices carry no data (a hardlink's size field may be set but its data is not stored).
      const dataSize = type === 'file' || type === 'other' ? size : 0;
      const mode = num(h, 100, 8);
      const mtime = num(h, 136, 12);
      const entry: TarEntry = {
        name,
        type,
        typeflag,
        size: dataSize,
        mode: Number.isNaN(mode) ? 0 : mode,
        mtime: new Date((Number.isNaN(mtime) ? 0 : mtime) * 1000),
        linkname,
        offset,
      };
      const sink = await onEntry(entry);
      const dataPadded = Math.ceil(dataSize / BLOCK) * BLOCK;
      let left = dataSize;
      const ok = await r.pieces(dataPadded, async (piece) => {
        if (left <= 0) return;
        const use = piece.length > left ? piece.subarray(0, left) : piece;
        left -= use.length;
        if (sink) await sink(use);
      });
      if (!ok)
        throw new TarError(file, name, `truncated: the archive ends inside its data (${dataSize} bytes declared)`);
    }
  };
  try {
    if (gz)
      await pipeline(
        createReadStream(file, { highWaterMark: 1 << 20 }),
        counter,
        createGunzip({ chunkSize: 1 << 18 }),
        consume,
      );
    else await pipeline(createReadStream(file, { highWaterMark: 1 << 20 }), counter, consume);
  } catch (e) {
    if (e instanceof TarError) throw e;
    const code = (e as NodeJS.ErrnoException).code;
    if (code?.startsWith('Z_'))
      throw new TarError(file, undefined, `gzip data is damaged or truncated (${(e as Error).message})`, { cause: e });
    throw e;
  }
}

/** Every entry of the archive (names as stored), reading it once and skipping the data. */
export async function listTar(file: string, opts: TarReadOptions = {}): Promise<TarEntry[]> {
  const out: TarEntry[] = [];
  await walkTar(
    file,
    (e) => {
      out.push(e);
      return null;
    },
    opts,
  );
  return out;
}

/** The name made relative and canonical ("./a//b/" → "a/b"), or why it may not be extracted. */
function normalize(name: string): { name: string } | { why: string } {
  if (name === '') return { why: 'the name is empty' };
  if (name.includes('\0')) return { why: 'the name contains a NUL byte' };
  if (name.includes('\\')) return { why: 'the name contains a backslash' };
  if (name.startsWith('/')) return { why: 'the name is an absolute path' };
  if (/^[a-zA-Z]:/.test(name)) return { why: 'the name starts with a drive letter' };
  const parts = name.split('/');
  if (parts.includes('..')) return { why: 'the name contains ".." (it would leave the destination)' };
  return { name: parts.filter((p) => p !== '' && p !== '.').join('/') };
}

/**
 * Extracts the archive's regular files (those `only` accepts) into `destDir`, which must not exist or be an empty
 * folder. The archive is streamed once; entries are written into a temp folder beside `destDir` that is renamed
 * to it only when the whole archive has been read without fault; on any error the temp folder is removed.
 * Refused (naming the entry): absolute names, "..", backslashes, drive letters, symlinks, hardlinks, device files,
 * fifos and other special entries, and two entries with one name.
 */
export async function extractTarGz(
  file: string,
  destDir: string,
  opts: ExtractTarOptions = {},
): Promise<{ dir: string; entries: TarEntry[] }> {
  const dest = resolve(destDir);
  let destEmpty = false;
  try {
    const st = statSync(dest);
    if (!st.isDirectory() || readdirSync(dest).length > 0)
      throw new TarError(file, undefined, `cannot extract into ${dest}: it exists and is not an empty folder`);
    destEmpty = true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  const tmp = join(dirname(dest), tempName(basename(dest)));
  mkdirSync(tmp);
  const written: TarEntry[] = [];
  const seen = new Map<string, TarEntryType>();
  let current: FileHandle | undefined; // the file being written, closed on any failure
  try {
    await walkTar(
      file,
      async (e) => {
        const n = normalize(e.name);
        if ('why' in n) throw new TarError(file, e.name, `refused: ${n.why}`);
        if (e.type === 'symlink')
          throw new TarError(file, e.name, `refused: it is a symbolic link (to "${e.linkname}")`);
        if (e.type === 'hardlink') throw new TarError(file, e.name, `refused: it is a hard link (to "${e.linkname}")`);
        if (e.type === 'other')
          throw new TarError(
            file,
            e.name,
            `refused: entry type '${e.typeflag.replace('\0', '\\0')}' is not a regular file or folder`,
          );
        if (n.name === '') {
          if (e.type === 'directory') return null; // "./"
          throw new TarError(file, e.name, 'refused: a file with an empty name');
        }
        const prev = seen.get(n.name);
        if (prev && !(prev === 'directory' && e.type === 'directory'))
          throw new TarError(file, e.name, 'refused: the archive holds two entries with this name');
        // A file that is also a folder's parent ("a" then "a/b"), or the reverse, is caught by the file system below.
        seen.set(n.name, e.type);
        if (opts.only && !opts.only(n.name)) return null;
        const out = join(tmp, ...n.name.split('/'));
        if (!isInside(tmp, out))
          throw new TarError(file, e.name, 'refused: it would be written outside the destination'); // belt and braces
        try {
          if (e.type === 'directory') {
            mkdirSync(out, { recursive: true });
            written.push({ ...e, name: n.name });
            return null;
          }
          mkdirSync(dirname(out), { recursive: true });
          // Permissions: rwx for the owner when the archive marks it executable, never setuid/setgid/sticky.
          const fh = await open(out, 'wx', e.mode & 0o111 ? 0o755 : 0o644);
          written.push({ ...e, name: n.name });
          if (e.size === 0) {
            await fh.close();
            return null;
          }
          current = fh;
          let left = e.size;
          return async (piece: Buffer) => {
            try {
              for (let off = 0; off < piece.length;)
                off += (await fh.write(piece, off, piece.length - off)).bytesWritten;
            } catch (err) {
              throw new TarError(file, e.name, `could not write it: ${(err as Error).message}`, { cause: err });
            }
            left -= piece.length;
            if (left === 0) {
              current = undefined;
              await fh.close();
            }
          };
        } catch (err) {
          if (err instanceof TarError) throw err;
          throw new TarError(file, e.name, `could not write it: ${(err as Error).message}`, { cause: err });
        }
      },
      opts,
    );
    if (destEmpty) rmdirSync(dest);
    renameSync(tmp, dest);
  } catch (e) {
    await current?.close().catch(() => undefined);
    rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
  return { dir: dest, entries: written };
}
