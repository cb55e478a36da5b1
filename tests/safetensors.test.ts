import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { readSafetensorsHeader, readTensorBytes, writeSafetensors } from '../native/onnx/safetensors.js';

function tmpDir(): string {
  return mkdtempSync(join(os.tmpdir(), 'ds-'));
}

function withTmp(fn: (dir: string) => void | Promise<void>): () => Promise<void> {
  return async () => {
    const dir = tmpDir();
    try {
      await fn(dir);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  };
}

const esc = (s: string): string => s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');

/** A file laid out by hand: 8-byte length, the header text as given (no padding), then the payload. */
function rawFile(file: string, header: unknown, payload: Uint8Array = new Uint8Array(0)): string {
  const text = typeof header === 'string' ? header : JSON.stringify(header);
  const h = Buffer.from(text, 'utf8');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(h.byteLength));
  writeFileSync(file, Buffer.concat([len, h, payload]));
  return file;
}

const bytesOfView = (a: ArrayBufferView): Uint8Array => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

test(
  'round trip: five dtypes and metadata keep dtype, shape, offsets and bytes',
  withTmp((dir) => {
    const file = join(dir, 'model.safetensors');
    const f32 = Float32Array.from([1.5, -2.25, 3, 0, 1e-3, 7]); // [2, 3]
    const f16 = Uint16Array.from([0x3c00, 0xbd00, 0x4000, 0x3800]); // 1, -1.25, 2, 0.5 as raw fp16 bits, [4]
    const bf16 = Uint16Array.from([0x3f80, 0xc000, 0x3ec0]); // 1, -2, 0.375 as raw bf16 bits, [3]
    const i64 = BigInt64Array.from([-1n, 2n ** 40n, 0n, 9007199254740993n]); // [2, 2]
    const f64 = Float64Array.from([Math.PI, -Math.E]); // [1, 2]
    writeSafetensors(
      file,
      {
        w_f32: { dtype: 'float32', shape: [2, 3], data: f32 },
        w_f16: { dtype: 'float16', shape: [4], data: f16 },
        w_bf16: { dtype: 'bfloat16', shape: [3], data: bf16 },
        w_i64: { dtype: 'int64', shape: [2, 2], data: i64 },
        w_f64: { dtype: 'float64', shape: [1, 2], data: f64 },
      },
      { format: 'pt', note: 'delta' },
    );

    const st = readSafetensorsHeader(file);
    assert.equal(st.file, file);
    assert.deepEqual(st.metadata, { format: 'pt', note: 'delta' });
    assert.deepEqual([...st.tensors.keys()].sort(), ['w_bf16', 'w_f16', 'w_f32', 'w_f64', 'w_i64']);

    // The header (after the 8-byte length) is padded so that the data starts at a multiple of 8.
    const raw = readFileSync(file);
    const hl = Number(raw.readBigUInt64LE(0));
    assert.equal(hl % 8, 0, `header length ${hl} must be a multiple of 8`);
    assert.equal(st.headerBytes, 8 + hl);
    const header = JSON.parse(raw.subarray(8, 8 + hl).toString('utf8')) as Record<
      string,
      { dtype: string; shape: number[]; data_offsets: [number, number] }
    >;
    assert.deepEqual(header.__metadata__, { format: 'pt', note: 'delta' });

    const expected: Record<string, { dtype: string; code: string; shape: number[]; data: ArrayBufferView }> = {
      w_f32: { dtype: 'float32', code: 'F32', shape: [2, 3], data: f32 },
      w_f16: { dtype: 'float16', code: 'F16', shape: [4], data: f16 },
      w_bf16: { dtype: 'bfloat16', code: 'BF16', shape: [3], data: bf16 },
      w_i64: { dtype: 'int64', code: 'I64', shape: [2, 2], data: i64 },
      w_f64: { dtype: 'float64', code: 'F64', shape: [1, 2], data: f64 },
    };
    let total = 0;
    for (const [name, exp] of Object.entries(expected)) {
      const ref = st.tensors.get(name);
      assert.ok(ref, `tensor ${name} is missing`);
      assert.equal(ref.name, name);
      assert.equal(ref.dtype, exp.dtype);
      assert.deepEqual(ref.shape, exp.shape);
      assert.equal(ref.file, file);
      assert.equal(header[name].dtype, exp.code);
      assert.deepEqual(header[name].shape, exp.shape);
      const [start, end] = header[name].data_offsets;
      assert.equal(ref.offset, 8 + hl + start);
      assert.equal(ref.length, end - start);
      assert.equal(ref.length, exp.data.byteLength);
      const got = readTensorBytes(ref);
      assert.deepEqual(Buffer.from(got), Buffer.from(bytesOfView(exp.data)), `bytes of ${name}`);
      total += ref.length;
    }
    assert.equal(total, 24 + 8 + 6 + 32 + 16);
    assert.equal(statSync(file).size, 8 + hl + total);

    // Tensors are laid out in name order, back to back.
    const order = Object.keys(expected).sort();
    let off = 0;
    for (const name of order) {
      assert.deepEqual(header[name].data_offsets, [off, off + expected[name].data.byteLength]);
      off += expected[name].data.byteLength;
    }

    // The typed values come back, not just the bytes.
    const i64Back = new BigInt64Array(readTensorBytes(st.tensors.get('w_i64')!).slice().buffer);
    assert.deepEqual([...i64Back], [-1n, 2n ** 40n, 0n, 9007199254740993n]);
    const f64Back = new Float64Array(readTensorBytes(st.tensors.get('w_f64')!).slice().buffer);
    assert.deepEqual([...f64Back], [Math.PI, -Math.E]);
  }),
);

test(
  'round trip without metadata: no __metadata__ key, empty metadata',
  withTmp((dir) => {
    const file = join(dir, 'plain.safetensors');
    writeSafetensors(file, { a: { dtype: 'float32', shape: [1], data: Float32Array.from([4]) } });
    const st = readSafetensorsHeader(file);
    assert.deepEqual(st.metadata, {});
    const raw = readFileSync(file);
    const hl = Number(raw.readBigUInt64LE(0));
    assert.equal(hl % 8, 0);
    assert.equal('__metadata__' in JSON.parse(raw.subarray(8, 8 + hl).toString('utf8')), false);
    assert.equal(st.tensors.get('a')!.offset, 8 + hl);
  }),
);

test(
  'writeSafetensors rejects data whose size disagrees with the shape',
  withTmp((dir) => {
    const file = join(dir, 'bad.safetensors');
    assert.throws(
      () => writeSafetensors(file, { w: { dtype: 'float32', shape: [2, 3], data: new Float32Array(5) } }),
      new RegExp(`${esc(file)}.*"w".*20 bytes.*\\[2,3\\].*float32 needs 24`),
    );
    assert.deepEqual(readdirSync(dir), [], 'nothing is written when the input is bad');
  }),
);

test(
  'bad files: each error names the file and the problem',
  withTmp((dir) => {
    const f32x6 = new Uint8Array(24);

    // Shorter than the 8-byte length field.
    const tiny = join(dir, 'tiny.safetensors');
    writeFileSync(tiny, Buffer.from([1, 2, 3, 4, 5]));
    assert.throws(
      () => readSafetensorsHeader(tiny),
      new RegExp(`^Error: ${esc(tiny)}: not a safetensors file \\(5 bytes, the 8-byte header length is missing\\)`),
    );

    // Empty file too.
    const empty = join(dir, 'empty.safetensors');
    writeFileSync(empty, Buffer.alloc(0));
    assert.throws(() => readSafetensorsHeader(empty), new RegExp(`${esc(empty)}: not a safetensors file \\(0 bytes`));

    // Header length larger than the file.
    const long = join(dir, 'long.safetensors');
    const lb = Buffer.alloc(8 + 10);
    lb.writeBigUInt64LE(1000n);
    writeFileSync(long, lb);
    assert.throws(
      () => readSafetensorsHeader(long),
      new RegExp(
        `${esc(long)}: bad safetensors header: it claims 1000 header bytes but the file has 10 after the length field`,
      ),
    );

    // A length field with the high bit set (would be negative as a signed number).
    const huge = join(dir, 'huge.safetensors');
    const hb = Buffer.alloc(8 + 4);
    hb.writeBigUInt64LE(2n ** 63n + 2n);
    writeFileSync(huge, hb);
    assert.throws(
      () => readSafetensorsHeader(huge),
      new RegExp(`${esc(huge)}: bad safetensors header: it claims ${2n ** 63n + 2n} header bytes`),
    );

    // Header not JSON.
    const notJson = rawFile(join(dir, 'notjson.safetensors'), '{"a": {dtype: F32}');
    assert.throws(
      () => readSafetensorsHeader(notJson),
      new RegExp(`${esc(notJson)}: bad safetensors header: not valid JSON \\(`),
    );

    // Header JSON, but an array.
    const arr = rawFile(
      join(dir, 'array.safetensors'),
      [{ dtype: 'F32', shape: [1], data_offsets: [0, 4] }],
      new Uint8Array(4),
    );
    assert.throws(
      () => readSafetensorsHeader(arr),
      new RegExp(`${esc(arr)}: bad safetensors header: expected a JSON object`),
    );

    // Header JSON, but a string / null.
    const str = rawFile(join(dir, 'string.safetensors'), '"hello"');
    assert.throws(
      () => readSafetensorsHeader(str),
      new RegExp(`${esc(str)}: bad safetensors header: expected a JSON object`),
    );
    const nul = rawFile(join(dir, 'null.safetensors'), 'null');
    assert.throws(
      () => readSafetensorsHeader(nul),
      new RegExp(`${esc(nul)}: bad safetensors header: expected a JSON object`),
    );

    // Unknown dtype.
    const dt = rawFile(
      join(dir, 'dtype.safetensors'),
      { w: { dtype: 'F8_XYZ', shape: [4], data_offsets: [0, 4] } },
      new Uint8Array(4),
    );
    assert.throws(
      () => readSafetensorsHeader(dt),
      new RegExp(`${esc(dt)}: tensor "w": unknown dtype "F8_XYZ" \\(expected one of F32, .*BF16\\)`),
    );

    // Negative dimension.
    const neg = rawFile(
      join(dir, 'neg.safetensors'),
      { w: { dtype: 'F32', shape: [2, -3], data_offsets: [0, 24] } },
      f32x6,
    );
    assert.throws(
      () => readSafetensorsHeader(neg),
      new RegExp(`${esc(neg)}: tensor "w": shape must be a list of non-negative integers, got \\[2,-3\\]`),
    );

    // Fractional dimension.
    const frac = rawFile(
      join(dir, 'frac.safetensors'),
      { w: { dtype: 'F32', shape: [1.5, 4], data_offsets: [0, 24] } },
      f32x6,
    );
    assert.throws(
      () => readSafetensorsHeader(frac),
      new RegExp(`${esc(frac)}: tensor "w": shape must be a list of non-negative integers, got \\[1.5,4\\]`),
    );

    // data_offsets whose length disagrees with shape × dtype.
    const len = rawFile(
      join(dir, 'len.safetensors'),
      { w: { dtype: 'F32', shape: [2, 3], data_offsets: [0, 20] } },
      f32x6,
    );
    assert.throws(
      () => readSafetensorsHeader(len),
      new RegExp(`${esc(len)}: tensor "w": 20 bytes for shape \\[2,3\\] of F32, expected 24`),
    );

    // data_offsets malformed: end before start, and not a pair.
    const back = rawFile(
      join(dir, 'back.safetensors'),
      { w: { dtype: 'F32', shape: [1], data_offsets: [8, 4] } },
      f32x6,
    );
    assert.throws(
      () => readSafetensorsHeader(back),
      new RegExp(`${esc(back)}: tensor "w": data_offsets must be \\[start, end\\] with start <= end, got \\[8,4\\]`),
    );
    const three = rawFile(
      join(dir, 'three.safetensors'),
      { w: { dtype: 'F32', shape: [1], data_offsets: [0, 4, 8] } },
      f32x6,
    );
    assert.throws(
      () => readSafetensorsHeader(three),
      new RegExp(`${esc(three)}: tensor "w": data_offsets must be .*got \\[0,4,8\\]`),
    );

    // Missing dtype.
    const nodt = rawFile(join(dir, 'nodtype.safetensors'), { w: { shape: [1], data_offsets: [0, 4] } }, f32x6);
    assert.throws(() => readSafetensorsHeader(nodt), new RegExp(`${esc(nodt)}: tensor "w": missing dtype`));

    // Overlapping tensors.
    const ov = rawFile(
      join(dir, 'overlap.safetensors'),
      {
        a: { dtype: 'F32', shape: [4], data_offsets: [0, 16] },
        b: { dtype: 'F32', shape: [2], data_offsets: [8, 16] },
      },
      new Uint8Array(16),
    );
    assert.throws(() => readSafetensorsHeader(ov), new RegExp(`${esc(ov)}: tensors "a" and "b" overlap`));

    // Overlap that only the sort reveals (listed in reverse order in the header).
    const ov2 = rawFile(
      join(dir, 'overlap2.safetensors'),
      {
        late: { dtype: 'F32', shape: [2], data_offsets: [12, 20] },
        early: { dtype: 'F32', shape: [4], data_offsets: [0, 16] },
      },
      new Uint8Array(20),
    );
    assert.throws(() => readSafetensorsHeader(ov2), new RegExp(`${esc(ov2)}: tensors "early" and "late" overlap`));

    // Adjacent (touching) tensors are fine.
    const adj = rawFile(
      join(dir, 'adjacent.safetensors'),
      {
        a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] },
        b: { dtype: 'F32', shape: [2], data_offsets: [8, 16] },
      },
      new Uint8Array(16),
    );
    assert.equal(readSafetensorsHeader(adj).tensors.size, 2);

    // __metadata__ values must be strings.
    const meta = rawFile(join(dir, 'meta.safetensors'), { __metadata__: { step: 3 } });
    assert.throws(
      () => readSafetensorsHeader(meta),
      new RegExp(`${esc(meta)}: __metadata__.step must be a string, got number`),
    );
  }),
);

test(
  'a truncated payload is reported as truncated, naming the file and the tensor',
  withTmp((dir) => {
    const file = join(dir, 'cut.safetensors');
    writeSafetensors(file, {
      a: { dtype: 'float32', shape: [4], data: Float32Array.from([1, 2, 3, 4]) },
      b: { dtype: 'float32', shape: [2, 2], data: Float32Array.from([5, 6, 7, 8]) },
    });
    const st = readSafetensorsHeader(file);
    const b = st.tensors.get('b')!;
    assert.equal(statSync(file).size, b.offset + b.length);

    // The header is still whole, the last tensor lost 3 bytes.
    truncateSync(file, b.offset + b.length - 3);
    const payload = b.offset + b.length - 3 - st.headerBytes;
    assert.throws(
      () => readSafetensorsHeader(file),
      new RegExp(
        `${esc(file)}: tensor "b": truncated payload: its bytes end at 32 but the file holds only ${payload} bytes of data`,
      ),
    );

    // A ref read before the file was cut: readTensorBytes says so too.
    assert.throws(
      () => readTensorBytes(b),
      new RegExp(`${esc(file)}: tensor "b" is truncated \\(read 13 of 16 bytes\\)`),
    );
    // The first tensor is still whole and readable.
    assert.deepEqual([...new Float32Array(readTensorBytes(st.tensors.get('a')!).slice().buffer)], [1, 2, 3, 4]);
  }),
);

test(
  'atomic write: overwriting leaves no temp files and the new content reads back',
  withTmp((dir) => {
    const file = join(dir, 'adapter.safetensors');
    writeSafetensors(file, { w: { dtype: 'float32', shape: [2], data: Float32Array.from([1, 2]) } }, { version: '1' });
    const before = readSafetensorsHeader(file);
    assert.deepEqual(before.metadata, { version: '1' });

    writeSafetensors(
      file,
      {
        w: { dtype: 'float32', shape: [3], data: Float32Array.from([10, 20, 30]) },
        z: { dtype: 'int64', shape: [1], data: BigInt64Array.from([42n]) },
      },
      { version: '2' },
    );

    const entries = readdirSync(dir);
    assert.deepEqual(entries, ['adapter.safetensors']);
    assert.equal(entries.filter((e) => e.endsWith('.tmp')).length, 0);

    const after = readSafetensorsHeader(file);
    assert.deepEqual(after.metadata, { version: '2' });
    assert.deepEqual(after.tensors.get('w')!.shape, [3]);
    assert.deepEqual([...new Float32Array(readTensorBytes(after.tensors.get('w')!).slice().buffer)], [10, 20, 30]);
    assert.deepEqual([...new BigInt64Array(readTensorBytes(after.tensors.get('z')!).slice().buffer)], [42n]);
    assert.equal(statSync(file).size, after.headerBytes + 12 + 8);

    // A failed write (bad data) leaves the old file in place and no temp files.
    assert.throws(
      () => writeSafetensors(file, { w: { dtype: 'float32', shape: [4], data: new Float32Array(3) } }),
      /needs 16/,
    );
    assert.deepEqual(readdirSync(dir), ['adapter.safetensors']);
    assert.deepEqual(readSafetensorsHeader(file).metadata, { version: '2' });
  }),
);
