import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, realpathSync, rmSync, symlinkSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import onnxProto from 'onnx-proto';
import { readSafetensorsHeader, writeSafetensors, type TensorRef } from '../native/onnx/safetensors.js';
import { Graph } from '../native/onnx/graph.js';
import { serialize } from '../native/onnx/serialize.js';
import { openSession, runSession, type OpenedSession } from '../native/runtime/session.js';

const { onnx } = onnxProto;

function withTmp(fn: (dir: string) => Promise<void>): () => Promise<void> {
  return async () => {
    const dir = mkdtempSync(join(os.tmpdir(), 'ds-'));
    try {
      await fn(dir);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  };
}

const esc = (s: string): string => s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');

// W [4, 3], b [3], x [2, 4]: values chosen so the JS reference and onnxruntime agree to 1e-6.
const W = Float32Array.from([0.5, -1, 2, 1.5, 0.25, -0.75, -2, 3, 0.125, 1, -0.5, 0.2]);
const B = Float32Array.from([0.1, -0.2, 0.3]);
const X = Float32Array.from([1, 2, 3, 4, -1, 0.5, 2, -3]);

/** y = x @ W + b, in float64 then rounded like the output. */
function reference(x: Float32Array, w: Float32Array, b: Float32Array, m: number, k: number, n: number): number[] {
  const y: number[] = [];
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let t = 0; t < k; t++) s += x[i * k + t] * w[t * n + j];
      y.push(Math.fround(s + b[j]));
    }
  }
  return y;
}

function writeLinear(file: string): void {
  writeSafetensors(
    file,
    {
      W: { dtype: 'float32', shape: [4, 3], data: W },
      b: { dtype: 'float32', shape: [3], data: B },
      unused: { dtype: 'bfloat16', shape: [3], data: Uint16Array.from([1, 2, 3]) }, // a tensor the graph never references
    },
    { format: 'pt' },
  );
}

function linearGraph(wRef: TensorRef, bRef: TensorRef): Graph {
  const g = new Graph();
  const x = g.input('x', 'float32', [2, 4]);
  const w = g.initializer('W', wRef, { dtype: 'float32', shape: [4, 3] });
  const b = g.initializer('b', bRef, { dtype: 'float32', shape: [3] });
  const y = g.op1('Add', [g.op1('MatMul', [x, w]), b]);
  g.output(y, 'y');
  return g;
}

async function runLinear(g: Graph): Promise<number[]> {
  const s = await openSession(g, { device: 'cpu' });
  try {
    assert.equal(s.device, 'cpu');
    const out = await runSession(s, { x: { dtype: 'float32', shape: [2, 4], data: X } });
    assert.equal(out.y.dtype, 'float32');
    assert.deepEqual(out.y.shape, [2, 3]);
    return Array.from(out.y.data as Float32Array);
  } finally {
    await s.session.release();
  }
}

function assertClose(got: number[], want: number[], tol: number): void {
  assert.equal(got.length, want.length);
  for (let i = 0; i < want.length; i++) {
    assert.ok(Math.abs(got[i] - want[i]) <= tol, `element ${i}: got ${got[i]}, want ${want[i]} (±${tol})`);
  }
}

test(
  'external weights: MatMul+Add reads W and b straight from the safetensors file',
  withTmp(async (dir) => {
    const file = join(dir, 'linear.safetensors');
    writeLinear(file);
    const st = readSafetensorsHeader(file);
    const wRef = st.tensors.get('W')!;
    const bRef = st.tensors.get('b')!;
    assert.deepEqual(wRef.shape, [4, 3]);
    assert.deepEqual(bRef.shape, [3]);

    const g = linearGraph(wRef, bRef);
    assert.equal(g.initializers.get('W')!.kind, 'external');
    assert.equal(g.initializers.get('b')!.kind, 'external');

    // Zero copy: the model holds only pointers into the file, never the weight bytes.
    const m = serialize(g);
    assert.equal(m.externalFolder, realpathSync(dir));
    const model = onnx.ModelProto.decode(m.bytes);
    const inits = model.graph!.initializer!;
    assert.deepEqual(inits.map((t) => t.name).sort(), ['W', 'b']);
    for (const t of inits) {
      const ref = t.name === 'W' ? wRef : bRef;
      assert.equal(t.dataLocation, onnx.TensorProto.DataLocation.EXTERNAL);
      assert.equal(t.rawData?.length ?? 0, 0, `${t.name} must carry no inline bytes`);
      assert.equal(t.floatData?.length ?? 0, 0);
      assert.deepEqual(t.dims!.map(Number), ref.shape);
      assert.equal(t.dataType, 1);
      const kv = Object.fromEntries(t.externalData!.map((e) => [e.key, e.value]));
      assert.deepEqual(kv, { location: 'linear.safetensors', offset: String(ref.offset), length: String(ref.length) });
    }

    const got = await runLinear(g);
    const want = reference(X, W, B, 2, 4, 3);
    assertClose(got, want, 1e-6);
    // Spot-check one element by hand: row 0 = [1,2,3,4] · W[:,0] = 0.5 + 3 - 6 + 4 = 1.5, + 0.1.
    assert.ok(Math.abs(got[0] - 1.6) < 1e-6, `y[0,0] = ${got[0]}`);

    // The session reads the file itself: rewrite W in place (same layout, doubled) and a new session sees it.
    const W2 = W.map((v) => v * 2);
    writeSafetensors(
      file,
      {
        W: { dtype: 'float32', shape: [4, 3], data: W2 },
        b: { dtype: 'float32', shape: [3], data: B },
        unused: { dtype: 'bfloat16', shape: [3], data: Uint16Array.from([1, 2, 3]) },
      },
      { format: 'pt' },
    );
    const again = readSafetensorsHeader(file).tensors.get('W')!;
    assert.equal(again.offset, wRef.offset, 'same layout, so the old refs still point at W');
    const got2 = await runLinear(linearGraph(wRef, bRef));
    assertClose(got2, reference(X, W2, B, 2, 4, 3), 1e-6);
    assert.ok(Math.abs(got2[0] - 3.1) < 1e-6, `y[0,0] with 2W = ${got2[0]}`);
  }),
);

test(
  'external weights at offsets that are not 8-aligned still load',
  withTmp(async (dir) => {
    // Names sort as W, a_pad, b: "a_pad" (3 bf16 = 6 bytes) sits between W and b, so b starts 54 bytes into the data.
    const file = join(dir, 'odd.safetensors');
    writeSafetensors(file, {
      a_pad: { dtype: 'bfloat16', shape: [3], data: Uint16Array.from([0x3f80, 0x3f80, 0x3f80]) },
      W: { dtype: 'float32', shape: [4, 3], data: W },
      b: { dtype: 'float32', shape: [3], data: B },
    });
    const st = readSafetensorsHeader(file);
    const wRef = st.tensors.get('W')!;
    const bRef = st.tensors.get('b')!;
    assert.equal(wRef.offset, st.headerBytes);
    assert.equal(bRef.offset, st.headerBytes + 48 + 6);
    assert.notEqual(bRef.offset % 4, 0, 'b must sit at an offset that is not 4-aligned for this test to mean anything');
    assertClose(await runLinear(linearGraph(wRef, bRef)), reference(X, W, B, 2, 4, 3), 1e-6);
  }),
);

test(
  'Hugging Face cache layout: weights through a snapshot symlink, nothing written next to it',
  withTmp(async (dir) => {
    const blobs = join(dir, 'blobs');
    const snap = join(dir, 'snapshots', 'abc');
    mkdirSync(blobs, { recursive: true });
    mkdirSync(snap, { recursive: true });
    const blobName = '3f2a9c0d41e5b6a7c8d9e0f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5';
    writeLinear(join(blobs, blobName));
    const link = join(snap, 'model.safetensors');
    symlinkSync(join('..', '..', 'blobs', blobName), link);

    const snapBefore = readdirSync(snap).sort();
    const blobsBefore = readdirSync(blobs).sort();
    assert.deepEqual(snapBefore, ['model.safetensors']);

    const st = readSafetensorsHeader(link);
    assert.equal(st.file, link);
    assert.equal(st.realFile, realpathSync(join(blobs, blobName)));
    const wRef = st.tensors.get('W')!;
    assert.equal(wRef.file, link);
    assert.equal(wRef.realFile, realpathSync(join(blobs, blobName)));

    const g = linearGraph(wRef, st.tensors.get('b')!);
    const m = serialize(g);
    // onnxruntime is pointed at the blob folder and the blob's own name, not the symlink.
    assert.equal(m.externalFolder, realpathSync(blobs));
    const loc = onnx.ModelProto.decode(m.bytes).graph!.initializer!.map(
      (t) => t.externalData!.find((e) => e.key === 'location')!.value,
    );
    assert.deepEqual(loc, [blobName, blobName]);

    assertClose(await runLinear(g), reference(X, W, B, 2, 4, 3), 1e-6);

    assert.deepEqual(readdirSync(snap).sort(), snapBefore, 'no file may be created in the snapshot folder');
    assert.deepEqual(readdirSync(blobs).sort(), blobsBefore, 'no file may be created in the blobs folder');
    assert.deepEqual(readdirSync(join(dir, 'snapshots')), ['abc']);
  }),
);

/** IEEE half bits of a value that fp16 represents exactly (normal numbers and zero). */
function fp16Bits(v: number): number {
  if (v === 0) return Object.is(v, -0) ? 0x8000 : 0;
  const sign = v < 0 ? 0x8000 : 0;
  const a = Math.abs(v);
  const e = Math.floor(Math.log2(a));
  const mant = (a / 2 ** e - 1) * 1024;
  if (e < -14 || e > 15 || !Number.isInteger(mant))
    throw new Error(`${v} is not exactly representable as a normal fp16`);
  return sign | ((e + 15) << 10) | mant;
}

/** bfloat16 bits: the top half of the float32 bits, for values that bf16 represents exactly. */
function bf16Bits(v: number): number {
  const u = new Uint32Array(Float32Array.from([v]).buffer)[0];
  if ((u & 0xffff) !== 0) throw new Error(`${v} is not exactly representable as bf16`);
  return u >>> 16;
}

async function castToF32(ref: TensorRef): Promise<{ shape: number[]; values: number[] }> {
  const g = new Graph();
  const w = g.initializer('w', ref, { dtype: ref.dtype, shape: ref.shape });
  const y = g.op1('Cast', [w], { to: 1 });
  assert.equal(y.dtype, 'float32');
  g.output(y, 'y');
  const s: OpenedSession = await openSession(g, { device: 'cpu' });
  try {
    const out = await runSession(s, {});
    assert.equal(out.y.dtype, 'float32');
    return { shape: out.y.shape, values: Array.from(out.y.data as Float32Array) };
  } finally {
    await s.session.release();
  }
}

test(
  'fp16 and bf16 weights referenced externally are read bit-exactly',
  withTmp(async (dir) => {
    assert.equal(fp16Bits(1), 0x3c00);
    assert.equal(fp16Bits(-1.25), 0xbd00);
    assert.equal(bf16Bits(1), 0x3f80);
    assert.equal(bf16Bits(-2), 0xc000);

    const f16Vals = [0.5, -1.25, 2, 1, -0.125, 1024, 0.099853515625, -65504];
    // The last one is the largest finite bf16, (2 - 2^-7) * 2^127.
    const bfExact = [1.0, -2.0, 0.375, -0.0078125, 256, 1.5, -7, 3.3895313892515355e38];
    const bfShape = [2, 2, 2];

    const file = join(dir, 'half.safetensors');
    writeSafetensors(file, {
      h: { dtype: 'float16', shape: [2, 4], data: Uint16Array.from(f16Vals.map(fp16Bits)) },
      g: { dtype: 'bfloat16', shape: bfShape, data: Uint16Array.from(bfExact.map(bf16Bits)) },
    });
    const st = readSafetensorsHeader(file);
    const h = st.tensors.get('h')!;
    const gb = st.tensors.get('g')!;
    assert.equal(h.dtype, 'float16');
    assert.equal(gb.dtype, 'bfloat16');

    const r16 = await castToF32(h);
    assert.deepEqual(r16.shape, [2, 4]);
    assert.deepEqual(r16.values, f16Vals);

    const rbf = await castToF32(gb);
    assert.deepEqual(rbf.shape, bfShape);
    assert.deepEqual(rbf.values, bfExact);
  }),
);

test(
  'a weight whose shape or dtype disagrees with the graph is an error naming the weight, the file and both',
  withTmp(async (dir) => {
    const file = join(dir, 'linear.safetensors');
    writeLinear(file);
    const st = readSafetensorsHeader(file);
    const wRef = st.tensors.get('W')!;

    const g = new Graph();
    assert.throws(
      () => g.initializer('W', wRef, { shape: [3, 4] }),
      new RegExp(`weight "W" in ${esc(file)}: shape \\[4, 3\\], the graph expects \\[3, 4\\]`),
    );
    assert.throws(
      () => g.initializer('W', wRef, { shape: [4, 3, 1] }),
      new RegExp(`weight "W" in ${esc(file)}: shape \\[4, 3\\], the graph expects \\[4, 3, 1\\]`),
    );
    assert.throws(
      () => g.initializer('W', wRef, { dtype: 'float16' }),
      new RegExp(`weight "W" in ${esc(file)}: dtype float32, the graph expects float16`),
    );
    // A symbolic dim cannot match a concrete one.
    assert.throws(() => g.initializer('W', wRef, { shape: ['hidden', 3] }), /the graph expects \[hidden, 3\]/);
    // Nothing was defined by the failed calls; the right expectation still works afterwards.
    assert.equal(g.values.has('W'), false);
    assert.equal(g.initializers.size, 0);
    const v = g.initializer('W', wRef, { dtype: 'float32', shape: [4, 3] });
    assert.deepEqual(v.shape, [4, 3]);
  }),
);

test(
  'weights from two different folders in one graph: serialize names both folders',
  withTmp(async (dir) => {
    const d1 = join(dir, 'one');
    const d2 = join(dir, 'two');
    mkdirSync(d1);
    mkdirSync(d2);
    writeLinear(join(d1, 'model.safetensors'));
    writeLinear(join(d2, 'model.safetensors'));
    const w = readSafetensorsHeader(join(d1, 'model.safetensors')).tensors.get('W')!;
    const b = readSafetensorsHeader(join(d2, 'model.safetensors')).tensors.get('b')!;
    const g = linearGraph(w, b);
    const r1 = realpathSync(d1);
    const r2 = realpathSync(d2);
    assert.throws(
      () => serialize(g),
      new RegExp(
        `weight "b" lives in ${esc(r2)} but other weights live in ${esc(r1)}: onnxruntime reads external weights from one folder`,
      ),
    );
    // openSession serializes too, so it fails the same way rather than loading half the weights.
    await assert.rejects(openSession(g, { device: 'cpu' }), new RegExp(`${esc(r2)}.*${esc(r1)}`));

    // Two files in the same folder are fine.
    writeSafetensors(join(d1, 'bias.safetensors'), { b: { dtype: 'float32', shape: [3], data: B } });
    const b1 = readSafetensorsHeader(join(d1, 'bias.safetensors')).tensors.get('b')!;
    const g2 = linearGraph(w, b1);
    assert.equal(serialize(g2).externalFolder, r1);
    assertClose(await runLinear(g2), reference(X, W, B, 2, 4, 3), 1e-6);
  }),
);
