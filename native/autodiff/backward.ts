// Reverse-mode differentiation over a Graph: gradient nodes are appended for the trainable parameters only.
import { isFloat } from '../onnx/dtype.js';
import type { Graph, Node, Value } from '../onnx/graph.js';
import { dimEq, fmtShape } from '../onnx/shape.js';
import { Recomputation } from './recompute.js';
import { RULES, ruleKey, type GradContext } from './registry.js';
import './rules/index.js';

export interface GradientRequest {
  /** A scalar float value. */
  loss: string;
  /** Values to differentiate with respect to (graph inputs or weights). */
  wrt: string[];
  /** Gradient fed into the loss (default 1); e.g. a loss scale or 1/micro-batches. */
  seed?: Value;
  /** Forward values the backward pass makes again instead of keeping (see recompute.ts: recomputeSet). */
  recompute?: ReadonlySet<string>;
}

export class NoGradientRuleError extends Error {}

/** Which forward nodes lie on a path from one of `wrt` to `loss`, with the parameter that reaches each value first. */
export function gradientPath(g: Graph, loss: string, wrt: string[]): { nodes: Node[]; reached: Map<string, string> } {
  const reached = new Map<string, string>();
  for (const w of wrt) reached.set(w, w);
  for (const n of g.nodes) {
    const from = n.inputs.find((i) => i && reached.has(i));
    if (!from) continue;
    for (const o of n.outputs) if (o && isFloat(g.value(o).dtype)) reached.set(o, reached.get(from)!);
  }
  const prod = g.producers();
  const toLoss = new Set<string>();
  const stack = [loss];
  while (stack.length) {
    const v = stack.pop()!;
    if (toLoss.has(v)) continue;
    toLoss.add(v);
    const n = prod.get(v);
    if (n) for (const i of n.inputs) if (i) stack.push(i);
  }
  const nodes = g.nodes.filter((n) => n.outputs.some((o) => o && toLoss.has(o) && reached.has(o)));
  return { nodes, reached };
}

/**
 * Appends gradient nodes to `g` and returns, for each of `wrt`, the value holding d loss / d param.
 * Paths that meet are accumulated; inputs that are frozen get no gradient work.
 */
export function buildGradients(g: Graph, req: GradientRequest): Map<string, Value> {
  const loss = g.value(req.loss);
  if (loss.shape.length !== 0 || !isFloat(loss.dtype))
    throw new Error(`loss "${req.loss}" must be a float scalar, got ${loss.dtype}${fmtShape(loss.shape)}`);
  for (const w of req.wrt) {
    const v = g.value(w);
    if (!isFloat(v.dtype)) throw new Error(`cannot differentiate with respect to "${w}" of ${v.dtype}`);
  }
  const { nodes, reached } = gradientPath(g, req.loss, req.wrt);
  const remat = req.recompute?.size ? new Recomputation(g, req.recompute) : undefined;
  const forwardNodes = g.nodes.length;
  const pending = new Map<string, Value[]>();
  pending.set(req.loss, [req.seed ?? g.constant(1, loss.dtype, [])]);

  const total = (name: string): Value | undefined => {
    const parts = pending.get(name);
    if (!parts || parts.length === 0) return undefined;
    if (parts.length === 1) return parts[0];
    const s = g.op1('Sum', parts);
    pending.set(name, [s]);
    return s;
  };

  for (let k = nodes.length - 1; k >= 0; k--) {
    const node = nodes[k];
    const dy = node.outputs.map((o) => (o ? total(o) : undefined));
    if (dy.every((d) => !d)) continue;
    const key = ruleKey(node.domain, node.op);
    const rule = RULES.get(key);
    const needs = node.inputs.map((i) => !!i && reached.has(i) && isFloat(g.value(i).dtype));
    if (!rule) {
      const i = node.inputs.find((n) => n && reached.has(n))!;
      throw new NoGradientRuleError(
        `no gradient rule for op ${key} (node "${node.name}"), which lies on the path from parameter "${reached.get(i)}" to loss "${req.loss}"; ` +
          `add one in native/autodiff/rules/ or freeze that parameter`,
      );
    }
    const ctx: GradContext = {
      g,
      node,
      dy,
      needs,
      x: (i) => g.value(node.inputs[i]),
      has: (i) => !!node.inputs[i],
      y: (i) => g.addNodeOutput(node, i),
      attr: (name, dflt) => (name in node.attrs ? node.attrs[name] : dflt) as never,
    };
    const start = g.nodes.length;
    const grads = g.scope(`grad/${node.name}`, () => rule(ctx));
    if (remat) readRecomputed(g, remat, start, dy, `grad/${node.name}/recompute`);
    node.inputs.forEach((inp, i) => {
      const gi = grads[i];
      if (!needs[i] || !gi) return;
      const x = g.value(inp);
      if (
        gi.dtype !== x.dtype ||
        gi.shape.length !== x.shape.length ||
        !gi.shape.every((d, j) => dimEq(d, x.shape[j]))
      ) {
        throw new Error(
          `gradient rule ${key} gave ${gi.dtype}${fmtShape(gi.shape)} for input "${inp}" of ${x.dtype}${fmtShape(x.shape)} (node "${node.name}")`,
        );
      }
      const list = pending.get(inp) ?? [];
      list.push(gi);
      pending.set(inp, list);
    });
  }

  if (remat)
    for (const n of g.nodes.slice(forwardNodes))
      for (const i of n.inputs)
        if (remat.values.has(i))
          throw new Error(`internal: backward node "${n.name}" reads "${i}", which was to be recomputed, not kept`);
  const out = new Map<string, Value>();
  for (const w of req.wrt) {
    const gv = total(w);
    if (!gv) throw new Error(`parameter "${w}" does not affect loss "${req.loss}": freeze it or connect it`);
    out.set(w, gv);
  }
  return out;
}

/**
 * Makes the nodes a rule added from `start` on read recomputed copies of the values `remat` does not keep, emitted
 * just before them. A value the rule reads only for its shape is read from a gradient of the same shape instead, so
 * that no copy is made for a shape.
 */
function readRecomputed(g: Graph, remat: Recomputation, start: number, dy: (Value | undefined)[], scope: string): void {
  const added = g.nodes.slice(start);
  const read = new Set(added.flatMap((n) => n.inputs.filter((i) => remat.values.has(i))));
  if (!read.size) return;
  const incoming = dy.find((d): d is Value => !!d)!;
  const sameShape = (v: Value): Value | undefined =>
    dy.find((d) => d && d.shape.length === v.shape.length && d.shape.every((x, k) => dimEq(x, v.shape[k])));
  const instead = g.insertAt(start, () => {
    const m = new Map<string, string>();
    for (const i of read) {
      const shapeOnly = added.every((n) => !n.inputs.includes(i) || n.op === 'Shape' || n.op === 'Size');
      const like = shapeOnly ? sameShape(g.value(i)) : undefined;
      m.set(i, like ? like.name : remat.value(i, incoming, scope));
    }
    return m;
  });
  for (const n of added) n.inputs = n.inputs.map((i) => instead.get(i) ?? i);
}
