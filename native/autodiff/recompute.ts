// Recomputation (rematerialisation): forward values that are large and cheap to make again are not kept for the
// backward pass; the backward pass makes them again from the smaller values they were made from, just before it
// first needs them, so that onnxruntime frees the forward copy after its last forward reader.
//
// The kinds, and what each recomputes from what it keeps:
// - attention: every value whose size grows with the square of the sequence (scores, mask-added scores, softmax
//   probabilities) of one attention, from its queries and keys and the shared mask — one Q·Kᵀ product per layer,
//   for the B·H·S² floats of each layer's probabilities (as FlashAttention's backward does);
// - activations: GELU/SiLU/ReLU outputs from their inputs, which their own gradient keeps anyway (one elementwise op);
// - norms: LayerNorm/RMSNorm outputs from their inputs, which their own gradient keeps anyway;
// - repeats: what Expand copies out of a smaller value (grouped-query attention's key/value heads repeated for every
//   query head, a prompt tiled over the batch), with the views of it, from that smaller value.
import { isFloat } from '../onnx/dtype.js';
import type { Graph, Node, Value } from '../onnx/graph.js';
import { type Dim, dimEq } from '../onnx/shape.js';
import { evalDim } from './memory.js';

export const RECOMPUTE_KINDS = ['attention', 'activations', 'norms', 'repeats'] as const;
export type RecomputeKind = (typeof RECOMPUTE_KINDS)[number];

const ACTIVATIONS = new Set(['Gelu', 'FastGelu', 'QuickGelu', 'Relu']);
const NORMS = new Set(['LayerNormalization', 'SimplifiedLayerNormalization']);
/** Ops whose output is a view of their input in onnxruntime: recomputed with the value they view. */
const VIEWS = new Set(['Reshape', 'Squeeze', 'Unsqueeze', 'Identity', 'Flatten']);

/**
 * How a dimension grows when every sequence-like size doubles: 1 for constants and the batch, 2 for a length, …;
 * Infinity for a size the graph made up (e.g. a Range's length), which may be as large as anything.
 */
function growth(d: Dim, lengths: Set<string>): number {
  if (typeof d === 'number') return 1;
  const at = (x: number): number => {
    const sizes: Record<string, number> = {};
    for (const sym of d.match(/[A-Za-z_][A-Za-z_0-9.:/]*/g) ?? [])
      sizes[sym] = sym === 'batch' ? 3 : lengths.has(sym) ? x : NaN;
    return evalDim(d, sizes);
  };
  const g = at(200) / at(100);
  return Number.isFinite(g) ? g : Infinity;
}

/** Forward values to recompute in the backward pass for the given kinds. */
export function recomputeSet(g: Graph, kinds: readonly RecomputeKind[]): Set<string> {
  const out = new Set<string>();
  if (!kinds.length) return out;
  const lengths = new Set<string>();
  for (const i of g.inputs)
    for (const d of g.value(i).shape) if (typeof d === 'string' && d !== 'batch') lengths.add(d);
  const producer = g.producers();
  const readers = new Map<string, Node[]>();
  for (const n of g.nodes) for (const i of n.inputs) if (i) readers.set(i, [...(readers.get(i) ?? []), n]);
  const outputs = new Set(g.outputs);
  const quadratic = (v: Value): boolean => v.shape.reduce<number>((a, d) => a * growth(d, lengths), 1) >= 3.5;
  const made = (name: string): boolean => !!name && producer.has(name) && !outputs.has(name);

  if (kinds.includes('attention')) {
    for (const anchor of g.nodes) {
      if (anchor.op !== 'Softmax' || !quadratic(g.value(anchor.outputs[0]))) continue;
      // The attention's S²-sized values: up to the Q·Kᵀ product through values only it reads, down to P·V.
      const region = new Set<string>([anchor.outputs[0]]);
      const nodes = new Set<Node>([anchor]);
      for (let grew = true; grew;) {
        grew = false;
        for (const n of [...nodes]) {
          for (const i of n.inputs) {
            if (!made(i) || region.has(i) || !quadratic(g.value(i))) continue;
            if (!(readers.get(i) ?? []).every((r) => nodes.has(r))) continue; // shared (e.g. the mask): kept
            region.add(i);
            nodes.add(producer.get(i)!);
            grew = true;
          }
          for (const o of n.outputs) {
            for (const r of readers.get(o) ?? []) {
              if (nodes.has(r) || !r.outputs.every((x) => !x || (made(x) && quadratic(g.value(x))))) continue;
              for (const x of r.outputs) if (x) region.add(x);
              nodes.add(r);
              grew = true;
            }
          }
        }
      }
      for (const v of region) out.add(v);
    }
  }
  const views = (v: string): string[] =>
    (readers.get(v) ?? [])
      .filter((r) => VIEWS.has(r.op) && made(r.outputs[0]))
      .flatMap((r) => [r.outputs[0], ...views(r.outputs[0])]);
  for (const n of g.nodes) {
    const wanted =
      (kinds.includes('activations') && ACTIVATIONS.has(n.op)) ||
      (kinds.includes('norms') && NORMS.has(n.op)) ||
      (kinds.includes('repeats') && n.op === 'Expand');
    if (!wanted || !made(n.outputs[0]) || !isFloat(g.value(n.outputs[0]).dtype)) continue;
    out.add(n.outputs[0]);
    for (const v of views(n.outputs[0])) out.add(v);
  }
  return out;
}

/**
 * Emits the recomputation of forward values, once each, for gradient rules: `value(name, dy)` returns the name of a
 * copy of `name` made in the backward pass. Its first nodes read a view of one kept input reshaped by a shape taken
 * from the gradient `dy` of the rule that first needs it: a data dependency that keeps onnxruntime (which runs a
 * node when its first reader needs it, see memory.ts) from computing the copy before that gradient exists.
 */
export class Recomputation {
  private readonly copies = new Map<string, string>();
  private readonly producer: Map<string, Node>;

  constructor(
    private readonly g: Graph,
    readonly values: ReadonlySet<string>,
  ) {
    this.producer = g.producers();
  }

  value(name: string, dy: Value, scope: string): string {
    const hit = this.copies.get(name);
    if (hit) return hit;
    return this.g.scope(scope, () => this.emit(name, dy));
  }

  private emit(name: string, dy: Value): string {
    const { g } = this;
    const hit = this.copies.get(name);
    if (hit) return hit;
    const node = this.producer.get(name)!;
    const inputs = node.inputs.map((i) => (i && this.values.has(i) ? this.emit(i, dy) : i));
    if (!node.inputs.some((i) => i && this.values.has(i))) {
      const k = inputs.findIndex((i) => i && dependentDims(g.value(i), dy));
      if (k >= 0) inputs[k] = afterGradient(g, g.value(inputs[k]), dy).name;
    }
    const last = node.outputs.reduce((a, o, i) => (o ? i : a), 0);
    const made = g.op(node.op, inputs, node.attrs, {
      infos: node.outputs.slice(0, last + 1).map((o) => {
        // An output nobody reads ('') still needs a type: the first one's.
        const v = g.value(o || node.outputs[0]);
        return { dtype: v.dtype, shape: v.shape };
      }),
    });
    node.outputs.forEach((o, i) => {
      if (o && i <= last) this.copies.set(o, made[i].name);
    });
    return this.copies.get(name)!;
  }
}

/** Which dim of `v` a dim of `dy` gives the same symbolic size (a batch or length): [v's, dy's]. */
function dependentDims(v: Value, dy: Value): [number, number] | undefined {
  for (let j = 0; j < v.shape.length; j++) {
    const d = v.shape[j];
    if (typeof d !== 'string') continue;
    const i = dy.shape.findIndex((e) => typeof e === 'string' && dimEq(d, e));
    if (i >= 0) return [j, i];
  }
  return undefined;
}

/** `v` viewed through a Reshape to its own shape, one dim of which is read from `dy`'s shape: v, once dy exists. */
function afterGradient(g: Graph, v: Value, dy: Value): Value {
  const [j, i] = dependentDims(v, dy)!;
  const dims = v.shape.map((d, k) =>
    k === j
      ? g.op1('Shape', [dy], { start: i, end: i + 1 })
      : typeof d === 'number'
        ? g.constant([d], 'int64', [1])
        : g.op1('Shape', [v], { start: k, end: k + 1 }),
  );
  const shape = g.op1('Concat', dims, { axis: 0 });
  return g.op1('Reshape', [v, shape], {}, { infos: [{ dtype: v.dtype, shape: v.shape }] });
}
