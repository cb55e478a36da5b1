// Whether onnxruntime's fused attention kernels (com.microsoft RotaryEmbedding and MultiHeadAttention) run on a device
// in float16, as training uses them there, and agree with attention written out — and so does the backward pass
// training builds for them (rules/attention.ts, rules/rotary.ts), whose kernels and fusions are the device's too.
// Checked once per process on a tiny causal case before a run builds its graph with them (ModelOptions.attention):
// where they do not, the run builds attention explicitly and says why, rather than failing at its first step.
import { buildGradients } from '../autodiff/backward.js';
import { DTYPES, toFloat16Bits, toFloat32 } from '../onnx/dtype.js';
import { Graph, type HostTensor } from '../onnx/graph.js';
import { openSession, runSession } from '../runtime/session.js';
import { attentionFor } from './step.js';

export interface FusedAttentionCheck {
  ok: boolean;
  /** Why not: the kernel's error, or how far its result is from attention written out. */
  reason?: string;
  /** Largest difference from the float64 reference (float16 inputs; float16 keeps ~3 significant digits). */
  maxError?: number;
}

export type GraphRunner = (g: Graph, feeds: Record<string, HostTensor>) => Promise<Record<string, HostTensor>>;

const [B, S, N, DH] = [2, 6, 2, 8]; // head size a multiple of 8, as flash attention needs
const D = N * DH;
const TOLERANCE = 2e-2;

/** Inputs rounded to float16 (the reference reads the same values), as float32 numbers and float16 tensors. */
function inputs(): { values: Record<string, Float32Array>; feeds: Record<string, HostTensor> } {
  const wave = (n: number, k: number) => Float32Array.from({ length: n }, (_, i) => Math.sin(0.37 * i * k + k));
  const half = (x: Float32Array) => toFloat32('float16', new Uint8Array(toFloat16Bits(x).buffer));
  const angle = (p: number, i: number) => p / 10000 ** ((2 * i) / DH);
  const values = {
    q: half(wave(B * S * D, 1)),
    k: half(wave(B * S * D, 2)),
    v: half(wave(B * S * D, 3)),
    dout: half(wave(B * S * D, 4)),
    cos: half(
      Float32Array.from({ length: (S * DH) / 2 }, (_, j) => Math.cos(angle(Math.floor(j / (DH / 2)), j % (DH / 2)))),
    ),
    sin: half(
      Float32Array.from({ length: (S * DH) / 2 }, (_, j) => Math.sin(angle(Math.floor(j / (DH / 2)), j % (DH / 2)))),
    ),
  };
  const f16 = (x: Float32Array, shape: number[]): HostTensor => ({ dtype: 'float16', shape, data: toFloat16Bits(x) });
  return {
    values,
    feeds: {
      q: f16(values.q, [B, S, D]),
      k: f16(values.k, [B, S, D]),
      v: f16(values.v, [B, S, D]),
      dout: f16(values.dout, [B, S, D]),
      cos: f16(values.cos, [S, DH / 2]),
      sin: f16(values.sin, [S, DH / 2]),
      pos: { dtype: 'int64', shape: [B, S], data: BigInt64Array.from({ length: B * S }, (_, i) => BigInt(i % S)) },
    },
  };
}

function graph(): Graph {
  const g = new Graph();
  const [q, k, v, dout] = ['q', 'k', 'v', 'dout'].map((n) => g.input(n, 'float16', [B, S, D]));
  const [cos, sin] = ['cos', 'sin'].map((n) => g.input(n, 'float16', [S, DH / 2]));
  const pos = g.input('pos', 'int64', [B, S]);
  const rope = (x: typeof q) => g.op1('RotaryEmbedding', [x, pos, cos, sin], { interleaved: 0 });
  const o = g.op1('MultiHeadAttention', [rope(q), rope(k), v], {
    num_heads: N,
    unidirectional: 1,
    scale: 1 / Math.sqrt(DH),
  });
  const out = g.op1('Cast', [o], { to: DTYPES.float32.onnx });
  g.output(out, 'out');
  // The gradients of ⟨out, dout⟩: dout flows back as the output's gradient.
  const f32 = (x: typeof q) => g.op1('Cast', [x], { to: DTYPES.float32.onnx });
  const loss = g.op1('ReduceSum', [g.op1('Mul', [out, f32(dout)])], { keepdims: 0 });
  const grads = buildGradients(g, { loss: loss.name, wrt: ['q', 'k', 'v'] });
  for (const n of GRADS) g.output(f32(grads.get(n.slice(1))!), n);
  return g;
}

const GRADS = ['dq', 'dk', 'dv'] as const;

/**
 * Rotary embedding (rotate_half), causal attention and their gradients for the output gradient `dout`, in float64;
 * [B, S, N·DH] in and out.
 */
function reference(x: Record<string, Float32Array>): Record<'out' | (typeof GRADS)[number], Float64Array> {
  const at = (b: number, s: number, h: number, d: number) => (b * S + s) * D + h * DH + d;
  // Each pair (i, i + DH/2) turned by the position's angle; back = by its negative (the gradient's turn).
  const turn = (t: ArrayLike<number>, back = false): Float64Array => {
    const out = new Float64Array(t.length);
    for (let b = 0; b < B; b++)
      for (let s = 0; s < S; s++)
        for (let h = 0; h < N; h++)
          for (let i = 0; i < DH / 2; i++) {
            const [c, sn] = [x.cos[s * (DH / 2) + i], (back ? -1 : 1) * x.sin[s * (DH / 2) + i]];
            const [a1, a2] = [t[at(b, s, h, i)], t[at(b, s, h, i + DH / 2)]];
            out[at(b, s, h, i)] = a1 * c - a2 * sn;
            out[at(b, s, h, i + DH / 2)] = a2 * c + a1 * sn;
          }
    return out;
  };
  const [q, k] = [turn(x.q), turn(x.k)];
  const scale = 1 / Math.sqrt(DH);
  const r = { out: new Float64Array(B * S * D), dq: new Float64Array(B * S * D), dk: new Float64Array(B * S * D) };
  const dv = new Float64Array(B * S * D);
  const dot = (a: ArrayLike<number>, i: number, c: ArrayLike<number>, j: number, b: number, h: number) => {
    let sum = 0;
    for (let d = 0; d < DH; d++) sum += a[at(b, i, h, d)] * c[at(b, j, h, d)];
    return sum;
  };
  for (let b = 0; b < B; b++)
    for (let h = 0; h < N; h++)
      for (let i = 0; i < S; i++) {
        const scores = Array.from({ length: i + 1 }, (_, j) => dot(q, i, k, j, b, h) * scale);
        const top = Math.max(...scores);
        const w = scores.map((sc) => Math.exp(sc - top));
        const sum = w.reduce((a, c) => a + c, 0);
        const p = w.map((wj) => wj / sum);
        // dP = dO·Vᵀ, dS = P ⊙ (dP − Σ P ⊙ dP); dQ = scale·dS·K, dK = scale·dSᵀ·Q, dV = Pᵀ·dO.
        const dp = p.map((_, j) => dot(x.dout, i, x.v, j, b, h));
        const mean = p.reduce((a, pj, j) => a + pj * dp[j], 0);
        for (let j = 0; j <= i; j++) {
          const ds = p[j] * (dp[j] - mean) * scale;
          for (let d = 0; d < DH; d++) {
            r.out[at(b, i, h, d)] += p[j] * x.v[at(b, j, h, d)];
            r.dq[at(b, i, h, d)] += ds * k[at(b, j, h, d)];
            r.dk[at(b, j, h, d)] += ds * q[at(b, i, h, d)];
            dv[at(b, j, h, d)] += p[j] * x.dout[at(b, i, h, d)];
          }
        }
      }
  return { out: r.out, dq: turn(r.dq, true), dk: turn(r.dk, true), dv };
}

/** Runs the tiny case with `run` and compares it with the reference: the output, then the gradients. Never throws. */
export async function checkFusedAttention(run: GraphRunner): Promise<FusedAttentionCheck> {
  const { values, feeds } = inputs();
  let got: Record<string, HostTensor>;
  try {
    got = await run(graph(), feeds);
  } catch (e) {
    return { ok: false, reason: (e as Error).message.split('\n')[0] };
  }
  const want = reference(values);
  let maxError = 0;
  for (const [name, what] of [
    ['out', 'attention written out'],
    ['dq', "the queries' gradient written out"],
    ['dk', "the keys' gradient written out"],
    ['dv', "the values' gradient written out"],
  ] as const) {
    const g = got[name]?.data as Float32Array | undefined;
    if (!g || g.length !== want[name].length)
      return { ok: false, reason: `its ${name} has ${g?.length ?? 0} values, ${what} ${want[name].length}` };
    for (let i = 0; i < g.length; i++) {
      const d = Math.abs(g[i] - want[name][i]);
      maxError = Math.max(maxError, Number.isNaN(d) ? Infinity : d); // a NaN fails the check
    }
    if (maxError > TOLERANCE)
      return { ok: false, maxError, reason: `it differs from ${what} by ${maxError.toPrecision(3)}` };
  }
  return { ok: true, maxError };
}

const checked = new Map<string, Promise<FusedAttentionCheck>>();

/** checkFusedAttention on a device's provider, once per process. */
export function fusedAttentionOn(device: 'cpu' | 'cuda'): Promise<FusedAttentionCheck> {
  let hit = checked.get(device);
  if (!hit) {
    hit = checkFusedAttention(async (g, feeds) => {
      const s = await openSession(g, { device });
      try {
        return await runSession(s, feeds);
      } finally {
        await s.session.release();
      }
    });
    checked.set(device, hit);
  }
  return hit;
}

/**
 * The attention a run on `device` builds: as asked; or, when left to the device, fused where its kernels run there
 * (checked) and explicit otherwise, with the reason.
 */
export async function chooseAttention(
  device: 'cpu' | 'cuda' | 'auto',
  asked: 'auto' | 'fused' | 'explicit' = 'auto',
): Promise<{ attention: 'fused' | 'explicit'; fallback?: string }> {
  const attention = attentionFor(device, asked);
  if (attention === 'explicit' || asked !== 'auto' || device === 'auto') return { attention };
  const check = await fusedAttentionOn(device);
  return check.ok
    ? { attention }
    : { attention: 'explicit', fallback: `fused attention does not run on ${device} (${check.reason})` };
}
