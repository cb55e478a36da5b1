// Where a training step's memory goes, without running it: the values a graph makes, with their sizes for a given
// batch and sequence length, freed after their last reader in the order onnxruntime runs the nodes. The peak of that
// live set, and what is alive at it (by kind and by layer), is what the arena must at least hold.
//
// onnxruntime's default order (GraphViewer's nodes_in_topological_order_, onnxruntime/core/graph/graph_viewer.cc)
// is not the order of the nodes in the file: it is a depth-first walk from the leaf nodes (those nobody reads) that
// emits a node after its inputs' producers, visiting those in descending node index (node index = position in the
// file). A node is therefore computed when its first reader needs it — which is why a recomputation must depend on the
// incoming gradient (see recompute.ts): otherwise the walk may run it before the forward pass has finished.
import { bytesOf } from '../onnx/dtype.js';
import type { Graph, Node, Value } from '../onnx/graph.js';
import type { Dim } from '../onnx/shape.js';
import { foldDim } from './dims.js';

/** Ops whose output is a view of their input in onnxruntime (kernels registered with Alias(0, 0)): no new buffer. */
const ALIASES = new Set(['Reshape', 'Squeeze', 'Unsqueeze', 'Identity', 'Flatten']);

/** What onnxruntime computes once when it loads a graph: weights, constants, and the values of nodes reading only those. */
function loadTimeValues(g: Graph): Set<string> {
  const constant = new Set<string>(g.initializers.keys());
  for (const n of g.nodes)
    if (n.inputs.every((i) => !i || constant.has(i))) for (const o of n.outputs) if (o) constant.add(o);
  return constant;
}

/** Products and fused attention: paced by arithmetic (tensor cores), not by memory. */
const COMPUTE_BOUND = new Set(['MatMul', 'FusedMatMul', 'Gemm', 'MultiHeadAttention']);
/** Ops that read of their first input only what they write: gathers and slices. */
const PICKS = new Set(['Gather', 'GatherElements', 'Slice']);
/** Ops that read only their input's shape. */
const SHAPE_ONLY = new Set(['Shape', 'Size']);

export interface MemoryTraffic {
  /** Bytes read and written per run by memory-bound kernels. */
  bytes: number;
  kernels: number;
  byOp: Record<string, number>;
}

/**
 * What a run's memory-bound kernels read and write — every node computed at run time but products, fused attention
 * and views — for the given sizes. On a GPU such kernels run at memory bandwidth, so their time follows this (an
 * estimate: a broadcast input may be read once). With `cuda`, what onnxruntime's CUDA provider fuses by itself in our
 * graphs counts as one kernel: an Add of stated shapes (Graph.declare) read only by a last-axis Softmax, which
 * BiasSoftmaxFusion makes one BiasSoftmax (onnxruntime/core/optimizer/bias_softmax_fusion.cc).
 */
export function memoryTraffic(g: Graph, sizes: Record<string, number>, opts: { cuda?: boolean } = {}): MemoryTraffic {
  const constant = loadTimeValues(g);
  const bytes = (name: string): number => {
    const v = g.value(name);
    return v.shape.reduce<number>((a, d) => a * evalDim(d, sizes), bytesOf(v.dtype));
  };
  // The Add → Softmax pairs fused on CUDA: the value between them is never written or read.
  const between = new Set<string>();
  if (opts.cuda) {
    const readers = new Map<string, Node[]>();
    for (const n of g.nodes) for (const i of n.inputs) if (i) readers.set(i, [...(readers.get(i) ?? []), n]);
    for (const n of g.nodes) {
      const r = readers.get(n.outputs[0]) ?? [];
      if (n.op !== 'Add' || r.length !== 1 || r[0].op !== 'Softmax') continue;
      const rank = g.value(n.outputs[0]).shape.length;
      const axis = (r[0].attrs.axis as number | undefined) ?? -1;
      if ((axis + rank) % rank === rank - 1 && n.inputs.every((i) => g.declared.has(i))) between.add(n.outputs[0]);
    }
  }
  const out: MemoryTraffic = { bytes: 0, kernels: 0, byOp: {} };
  for (const n of g.nodes) {
    if (COMPUTE_BOUND.has(n.op) || ALIASES.has(n.op) || SHAPE_ONLY.has(n.op)) continue;
    if (n.outputs.every((o) => !o || constant.has(o))) continue;
    const moved = [...n.inputs, ...n.outputs].filter((v) => v && !between.has(v));
    let b = moved.reduce((a, v) => a + bytes(v), 0);
    if (PICKS.has(n.op) && !between.has(n.inputs[0])) b += bytes(n.outputs[0]) - bytes(n.inputs[0]);
    out.bytes += b;
    if (!n.outputs.some((o) => between.has(o))) out.kernels++;
    const op = n.outputs.some((o) => between.has(o)) || n.inputs.some((i) => between.has(i)) ? 'BiasSoftmax' : n.op;
    out.byOp[op] = (out.byOp[op] ?? 0) + b;
  }
  return out;
}

/** The value of a symbolic dimension ("batch", "seq-1", "(seq-1)*batch", …) for the given sizes. */
export function evalDim(d: Dim, sizes: Record<string, number>): number {
  if (typeof d === 'number') return d;
  const v = foldDim<number>(
    d,
    (t) => {
      if (/^\d+$/.test(t)) return Number(t);
      if (sizes[t] === undefined)
        throw new Error(`dimension "${d}": no size for "${t}" (give it, e.g. ${t}=…; known: ${Object.keys(sizes)})`);
      return sizes[t];
    },
    (op, a, b) => (op === '+' ? a + b : op === '-' ? a - b : op === '*' ? a * b : a / b),
  );
  if (v === undefined) throw new Error(`dimension "${d}" does not parse`);
  return v;
}

/** The nodes in the order onnxruntime 1.29 runs them by default (see the top of this file). */
export function onnxruntimeOrder(g: Graph): Node[] {
  const index = new Map<Node, number>(g.nodes.map((n, i) => [n, i]));
  const producer = g.producers();
  const read = new Set<Node>();
  for (const n of g.nodes) for (const i of n.inputs) if (i && producer.has(i)) read.add(producer.get(i)!);
  const stack: [Node, boolean][] = g.nodes.filter((n) => !read.has(n)).map((n) => [n, false]);
  const seen = new Set<Node>();
  const order: Node[] = [];
  while (stack.length) {
    const [n, leaving] = stack.pop()!;
    if (leaving) {
      order.push(n);
      continue;
    }
    if (seen.has(n)) continue;
    seen.add(n);
    stack.push([n, true]);
    const from = [...new Set(n.inputs.filter((i) => i && producer.has(i)).map((i) => producer.get(i)!))];
    from.sort((a, b) => index.get(a)! - index.get(b)!);
    for (const p of from) stack.push([p, false]);
  }
  return order;
}

export type Phase = 'forward' | 'backward' | 'recompute' | 'optimizer';

/** Where a node belongs, from the scopes buildTrainStep gives its parts. */
export function phaseOf(node: Node): Phase {
  if (node.name.startsWith('grad/')) return node.name.includes('/recompute/') ? 'recompute' : 'backward';
  if (node.name.startsWith('optimizer/')) return 'optimizer';
  return 'forward';
}

/** Transformer block of a node, from the Hugging Face module names in its scope (layers.3, layer.3, h.3, block.3). */
export function layerOf(node: Node): number | undefined {
  const m = /(?:^|[./])(?:layers?|h|block)\.(\d+)(?:[./]|$)/.exec(node.name);
  return m ? Number(m[1]) : undefined;
}

export interface ModelHints {
  /** Vocabulary size: values with this last dimension are logits or their softmax. */
  vocab?: number;
  /** Feed-forward width: values with this last dimension are feed-forward intermediates. */
  intermediate?: number;
}

/** What a value is, in the words a person tuning memory would use. */
export function kindOf(v: Value, producer: Node | undefined, hints: ModelHints = {}): string {
  if (!producer) return 'inputs';
  const phase = phaseOf(producer);
  if (phase === 'backward') return 'gradients';
  if (phase === 'recompute') return 'recomputed activations';
  if (phase === 'optimizer') return 'optimizer temporaries';
  const s = v.shape;
  const last = s[s.length - 1];
  if (hints.vocab !== undefined && last === hints.vocab) return 'logits and vocabulary softmax';
  if (producer.op === 'SoftmaxCrossEntropyLoss' || producer.name.includes('SoftmaxCrossEntropyLoss/'))
    return 'logits and vocabulary softmax';
  const symbolic = (d: Dim | undefined): boolean => typeof d === 'string' && d.includes('seq');
  if (s.length >= 4 && symbolic(s[s.length - 1]) && symbolic(s[s.length - 2])) {
    if (s[1] === 1) return 'attention mask';
    if (producer.op === 'Softmax') return 'attention probabilities';
    return 'attention scores';
  }
  if (['LayerNormalization', 'SimplifiedLayerNormalization'].includes(producer.op)) return 'norms';
  if (hints.intermediate !== undefined && last === hints.intermediate) return 'feed-forward intermediates';
  if (['Gelu', 'FastGelu', 'QuickGelu', 'Relu'].includes(producer.op)) return 'feed-forward intermediates';
  if (/attn|attention/i.test(producer.name)) return 'attention q, k, v and context';
  return 'other activations';
}

export interface LiveValue {
  name: string;
  bytes: number;
  kind: string;
  phase: Phase;
  op: string;
  layer?: number;
  shape: number[];
}

export interface MemoryPlan {
  order: 'onnxruntime' | 'serialized';
  sizes: Record<string, number>;
  /** Weights read at run time: initializers and what onnxruntime folds from them (e.g. float32 copies of bf16). */
  weightBytes: number;
  /** Tensors fed each step: the batch, trainable parameters, optimizer moments. */
  inputBytes: number;
  /** Peak bytes of values the step makes (activations, gradients, outputs), views not counted twice. */
  peakBytes: number;
  /** The node at which the peak is reached (its outputs made, its inputs not yet freed). */
  peakAt: { node: string; op: string; phase: Phase; position: number; of: number };
  /** Values alive at the peak, largest first. */
  live: LiveValue[];
  byKind: Record<string, number>;
  byLayer: Record<string, number>;
  /** Live bytes after each node, in order (for plots and for comparing with onnxruntime's profile). */
  timeline: number[];
}

/**
 * Liveness of `g`'s values for the given sizes of its symbolic dimensions, in onnxruntime's order (default) or the
 * order of the nodes in the graph. Static: in-place reuse (which onnxruntime does for some elementwise kernels) and
 * workspace inside kernels are not modelled; fragmentation of the arena comes on top.
 */
export function memoryPlan(
  g: Graph,
  sizes: Record<string, number>,
  opts: { order?: 'onnxruntime' | 'serialized'; hints?: ModelHints } = {},
): MemoryPlan {
  const orderName = opts.order ?? 'onnxruntime';
  const order = orderName === 'onnxruntime' ? onnxruntimeOrder(g) : g.nodes;
  const producer = g.producers();
  const bytes = (v: Value): number => v.shape.reduce<number>((a, d) => a * evalDim(d, sizes), bytesOf(v.dtype));

  const constant = loadTimeValues(g);
  const readAtRunTime = new Set<string>();
  for (const n of g.nodes)
    if (!n.outputs.every((o) => !o || constant.has(o)))
      for (const i of n.inputs) if (i && constant.has(i)) readAtRunTime.add(i);
  for (const o of g.outputs) if (constant.has(o)) readAtRunTime.add(o);
  let weightBytes = 0;
  for (const w of readAtRunTime) weightBytes += bytes(g.value(w));
  const inputBytes = g.inputs.reduce((a, i) => a + bytes(g.value(i)), 0);

  // Views share their source's buffer; a buffer lives until the last reader of any of its views.
  const root = new Map<string, string>();
  const rootOf = (name: string): string => root.get(name) ?? name;
  for (const n of order) {
    if (!ALIASES.has(n.op) || !n.inputs[0] || !n.outputs[0]) continue;
    root.set(n.outputs[0], rootOf(n.inputs[0]));
  }
  const fed = new Set([...g.inputs, ...constant]);
  const made = (name: string): boolean => !!name && !fed.has(rootOf(name)) && !constant.has(name);
  const lastUse = new Map<string, number>();
  order.forEach((n, k) => {
    for (const i of n.inputs) if (made(i)) lastUse.set(rootOf(i), k);
  });
  for (const o of g.outputs) if (made(o)) lastUse.set(rootOf(o), Infinity);

  const timeline: number[] = [];
  let live = 0,
    peak = -1,
    peakPos = 0;
  const freeAt = new Map<number, string[]>();
  order.forEach((n, k) => {
    for (const o of n.outputs) {
      if (!made(o) || rootOf(o) !== o) continue;
      live += bytes(g.value(o));
      const end = lastUse.get(o) ?? k;
      if (end !== Infinity) freeAt.set(end, [...(freeAt.get(end) ?? []), o]);
    }
    if (live > peak) {
      peak = live;
      peakPos = k;
    }
    for (const o of freeAt.get(k) ?? []) live -= bytes(g.value(o));
    timeline.push(live);
  });

  const position = new Map<Node, number>(order.map((n, k) => [n, k]));
  const alive: LiveValue[] = [];
  for (const n of order.slice(0, peakPos + 1)) {
    for (const o of n.outputs) {
      if (!made(o) || rootOf(o) !== o) continue;
      const end = lastUse.get(o) ?? position.get(n)!;
      if (end < peakPos) continue;
      const v = g.value(o);
      const p = producer.get(o)!;
      alive.push({
        name: o,
        bytes: bytes(v),
        kind: kindOf(v, p, opts.hints),
        phase: phaseOf(p),
        op: p.op,
        layer: layerOf(p),
        shape: v.shape.map((d) => evalDim(d, sizes)),
      });
    }
  }
  alive.sort((a, b) => b.bytes - a.bytes);
  const byKind: Record<string, number> = {},
    byLayer: Record<string, number> = {};
  for (const v of alive) {
    byKind[v.kind] = (byKind[v.kind] ?? 0) + v.bytes;
    const l = v.layer === undefined ? 'outside layers' : `layer ${v.layer}`;
    byLayer[l] = (byLayer[l] ?? 0) + v.bytes;
  }
  const at = order[peakPos];
  return {
    order: orderName,
    sizes,
    weightBytes,
    inputBytes,
    peakBytes: Math.max(peak, 0),
    peakAt: {
      node: at?.name ?? '',
      op: at?.op ?? '',
      phase: at ? phaseOf(at) : 'forward',
      position: peakPos,
      of: order.length,
    },
    live: alive,
    byKind,
    byLayer,
    timeline,
  };
}
