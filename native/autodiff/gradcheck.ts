// Checks gradient rules against finite differences: the analytic directional derivative along a random direction
// vs a central difference of the float64 graph (JAX's check_grads, in one direction per input).
//
// The gradient graphs run on the provider under test; the central difference runs on the CPU, whose float64 kernels
// compute in float64. It must: onnxruntime's CUDA provider evaluates float64 Softmax and LogSoftmax with float exp
// and log, and float64 Dropout in float (see cuda-kernels.ts), and a difference over h = 1e-5 turns that float32
// rounding (~6e-8 of the loss) into ~1e-3 of the derivative — the errors doctor reported on CUDA, which said nothing
// about the rules. Only cases that draw random numbers (the mask must be the device's) take their difference on the
// device, and those are linear in their input, so a unit step keeps any rounding out of it.
import { type DType, type TypedArray, isFloat } from '../onnx/dtype.js';
import { Graph, type HostTensor, type Value, makeArray } from '../onnx/graph.js';
import type { Dim } from '../onnx/shape.js';
import { openSession, runSession, type SessionOptions } from '../runtime/session.js';
import { Rng, hashString } from '../rng.js';
import { buildGradients } from './backward.js';
import { float64InFloat32OnCuda } from './cuda-kernels.js';

export interface CaseInput {
  shape: number[];
  /** Shape declared in the graph, when it should be symbolic (e.g. ['batch', 'seq', 8]). */
  declared?: Dim[];
  kind?: 'float' | 'int64' | 'int32' | 'bool';
  values?: number[];
  range?: [number, number];
  /** Float inputs get a gradient unless this is false. */
  grad?: boolean;
}

export interface GradCase {
  /** The rule under test (its registry key). */
  rule: string;
  label: string;
  inputs: CaseInput[];
  build(g: Graph, x: Value[], dt: DType): Value;
  /** The same function built from ops that have float64 kernels, for ops onnxruntime runs in float32 only. */
  reference64?(g: Graph, x: Value[]): Value;
  /**
   * Runs each evaluation in a fresh session (for ops that draw random numbers from a seed attribute). Their draws
   * are the device's own, so their central difference runs on the device under test.
   */
  freshSession?: boolean;
  /** The function is linear in its float inputs: a central difference is exact at any step (a unit step is used). */
  linear?: boolean;
}

export interface CaseResult {
  rule: string;
  label: string;
  /** Relative error of the float32 gradient vs float64 finite differences. */
  err32: number;
  /** Relative error of the float64 gradient vs finite differences (when onnxruntime has float64 kernels). */
  err64?: number;
  error?: string;
  /** Tolerances this result was held to (TOL32, TOL64 unless the provider computes float64 in float32). */
  tol32: number;
  tol64: number;
  /** Why the float64 tolerance is float32's on this provider (the kernels, named). */
  tol64Why?: string[];
}

export const TOL32 = 1e-3;
export const TOL64 = 1e-6;

function inputData(inp: CaseInput, dt: DType, rng: Rng): HostTensor {
  const n = inp.shape.reduce((a, b) => a * b, 1);
  const kind = inp.kind ?? 'float';
  if (kind !== 'float') {
    const dtype: DType = kind === 'bool' ? 'bool' : kind;
    return {
      dtype,
      shape: inp.shape,
      data: makeArray(dtype, inp.values ?? Array.from({ length: n }, () => rng.int(2))),
    };
  }
  const [lo, hi] = inp.range ?? [-1, 1];
  const vals = inp.values ?? Array.from({ length: n }, () => rng.uniform(lo, hi));
  return { dtype: dt, shape: inp.shape, data: makeArray(dt, vals) };
}

function toF64(t: HostTensor): Float64Array {
  return Float64Array.from(t.data as ArrayLike<number>);
}

export interface Built {
  graph: Graph;
  out: string;
  grads: string[];
  /** Nodes before this index are the function; from it on, the gradient rules' nodes. */
  gradFrom: number;
}

/**
 * A case's graph as a check runs it: the function in `dt` (or its float64 reference), and with `wShape` the scalar
 * loss Σ w·out and, with `withGrad`, the gradients of every float input.
 */
export function buildCase(c: GradCase, dt: DType, useRef: boolean, withGrad: boolean, wShape?: Dim[]): Built {
  const g = new Graph();
  const xs = c.inputs.map((inp, i) => {
    const kind = inp.kind ?? 'float';
    const dtype: DType = kind === 'float' ? dt : kind === 'bool' ? 'bool' : kind;
    return g.input(`x${i}`, dtype, inp.declared ?? inp.shape);
  });
  let out = useRef ? c.reference64!(g, xs) : c.build(g, xs, dt);
  if (out.dtype !== dt) out = g.op1('Cast', [out], { to: dt === 'float64' ? 11 : 1 });
  if (!wShape) {
    g.output(out, 'out');
    return { graph: g, out: 'out', grads: [], gradFrom: g.nodes.length };
  }
  const w = g.input('w', dt, wShape);
  const loss = g.op1('ReduceSum', [g.op1('Mul', [out, w])], { keepdims: 0 }, { names: ['loss'] });
  g.output(loss);
  const grads: string[] = [];
  const gradFrom = g.nodes.length;
  if (withGrad) {
    const wrt = xs
      .filter((_, i) => (c.inputs[i].kind ?? 'float') === 'float' && c.inputs[i].grad !== false)
      .map((v) => v.name);
    const gm = buildGradients(g, { loss: 'loss', wrt });
    for (const name of wrt) grads.push(g.output(gm.get(name)!, `grad_${name}`).name);
  }
  return { graph: g, out: 'loss', grads, gradFrom };
}

async function evaluator(
  b: Built,
  c: GradCase,
  opts: SessionOptions,
): Promise<(feeds: Record<string, HostTensor>) => Promise<Record<string, HostTensor>>> {
  if (c.freshSession) {
    return async (feeds) => runSession(await openSession(b.graph, opts), feeds);
  }
  const s = await openSession(b.graph, opts);
  return (feeds) => runSession(s, feeds);
}

/** Checks one case on one device. Never throws: failures are reported in the result. */
export async function checkCase(c: GradCase, device: 'cpu' | 'cuda' = 'cpu'): Promise<CaseResult> {
  const res: CaseResult = { rule: c.rule, label: c.label, err32: NaN, tol32: TOL32, tol64: TOL64 };
  try {
    const rng = new Rng(hashString(c.label));
    const x64 = c.inputs.map((inp) => inputData(inp, 'float64', rng));
    const feeds = (dt: DType, xs: HostTensor[]): Record<string, HostTensor> =>
      Object.fromEntries(
        xs.map((t, i) => [
          `x${i}`,
          isFloat(t.dtype) ? { dtype: dt, shape: t.shape, data: makeArray(dt, toF64(t)) } : t,
        ]),
      );
    // Forward once to learn the output's concrete shape.
    const probe = buildCase(c, 'float32', false, false);
    const out0 = (await (await evaluator(probe, c, { device }))(feeds('float32', x64))).out;
    const wT: HostTensor = {
      dtype: 'float64',
      shape: out0.shape,
      data: makeArray(
        'float64',
        Array.from({ length: out0.data.length }, () => rng.uniform(-1, 1)),
      ),
    };
    const wDecl = buildCase(c, 'float32', false, false).graph.value('out').shape;
    const withW = (dt: DType, xs: HostTensor[]) => ({
      ...feeds(dt, xs),
      w: { dtype: dt, shape: wT.shape, data: makeArray(dt, wT.data as Float64Array) },
    });

    const gradIdx = c.inputs.flatMap((inp, i) => ((inp.kind ?? 'float') === 'float' && inp.grad !== false ? [i] : []));
    const b32 = buildCase(c, 'float32', false, true, wDecl);
    const run32 = await evaluator(b32, c, { device });
    const g32 = await run32(withW('float32', x64));
    const fd = buildCase(c, 'float64', !!c.reference64, false, wDecl);
    const runFd = await evaluator(fd, c, { device: c.freshSession ? device : 'cpu', optimization: 'basic' });
    let run64: typeof run32 | undefined, g64: Record<string, HostTensor> | undefined;
    if (!c.reference64) {
      const b64 = buildCase(c, 'float64', false, true, wDecl);
      // A float64 gradient is only as exact as the kernels that compute it: held to float32's tolerance where the
      // provider rounds float64 to float32 inside (named in the result).
      const why = device === 'cuda' ? float64InFloat32OnCuda(b64.graph) : [];
      if (why.length) Object.assign(res, { tol64: TOL32, tol64Why: why });
      run64 = await evaluator(b64, c, { device, optimization: 'basic' });
      g64 = await run64(withW('float64', x64));
    }
    const h = c.linear ? 1 : 1e-5;
    let e32 = 0,
      e64 = 0;
    for (const [k, i] of gradIdx.entries()) {
      const v = Float64Array.from({ length: x64[i].data.length }, () => rng.normal());
      const shifted = (sign: number): HostTensor[] =>
        x64.map((t, j) => (j !== i ? t : { ...t, data: toF64(t).map((a, m) => a + sign * h * v[m]) as TypedArray }));
      const lp = toF64((await runFd(withW('float64', shifted(1)))).loss)[0];
      const lm = toF64((await runFd(withW('float64', shifted(-1)))).loss)[0];
      const num = (lp - lm) / (2 * h);
      const err = (grad: HostTensor): number => {
        const gv = toF64(grad);
        let dot = 0,
          mag = 0;
        for (let m = 0; m < gv.length; m++) {
          dot += gv[m] * v[m];
          mag += Math.abs(gv[m] * v[m]);
        }
        return Math.abs(dot - num) / Math.max(mag, Math.abs(num), 1e-12);
      };
      e32 = Math.max(e32, err(g32[b32.grads[k]]));
      if (g64) e64 = Math.max(e64, err(g64[b32.grads[k]]));
    }
    res.err32 = e32;
    if (g64) res.err64 = e64;
  } catch (e) {
    res.error = (e as Error).message;
  }
  return res;
}

export const passed = (r: CaseResult): boolean =>
  !r.error && r.err32 <= r.tol32 && (r.err64 === undefined || r.err64 <= r.tol64);
