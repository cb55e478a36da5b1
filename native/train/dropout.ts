// Dropout whose masks are a pure function of (seed input, node, element index): a resumed run draws the same masks
// as an uninterrupted one, and no random state lives inside onnxruntime.
import type { Graph, Value } from '../onnx/graph.js';
import { hashString } from '../rng.js';

const U32 = 12; // ONNX uint32

function fmix32(g: Graph, h: Value): Value {
  const u = (v: number): Value => g.constant(v, 'uint32', []);
  const xs = (x: Value, s: number): Value =>
    g.op1('BitwiseXor', [x, g.op1('BitShift', [x, u(s)], { direction: 'RIGHT' })]);
  h = xs(h, 16);
  h = g.op1('Mul', [h, u(0x85ebca6b)]);
  h = xs(h, 13);
  h = g.op1('Mul', [h, u(0xc2b2ae35)]);
  return xs(h, 16);
}

/** Uniform [0, 1) float32 numbers shaped like `like`, from a murmur3 finaliser over element indices. */
export function seededUniform(g: Graph, like: Value, seed: Value, salt: number): Value {
  const n = g.op1('Size', [like]);
  const idx = g.op1('Range', [g.constant(0, 'int64', []), n, g.constant(1, 'int64', [])]);
  const shaped = g.op1(
    'Reshape',
    [idx, g.op1('Shape', [like])],
    {},
    { infos: [{ dtype: 'int64', shape: like.shape }] },
  );
  const key = fmix32(
    g,
    g.op1('BitwiseXor', [g.op1('Cast', [seed], { to: U32 }), g.constant(salt >>> 0, 'uint32', [])]),
  );
  const h = fmix32(g, g.op1('BitwiseXor', [g.op1('Cast', [shaped], { to: U32 }), key]));
  const top24 = g.op1('BitShift', [h, g.constant(8, 'uint32', [])], { direction: 'RIGHT' });
  return g.op1('Mul', [g.op1('Cast', [top24], { to: 1 }), g.constant(2 ** -24, 'float32', [])]);
}

/**
 * Replaces every training-mode Dropout node by a seeded one. Returns how many were replaced.
 * A node's salt comes from its name, so each layer draws its own mask.
 */
export function lowerDropout(g: Graph, seed: Value): number {
  let count = 0;
  for (let i = 0; i < g.nodes.length; i++) {
    const node = g.nodes[i];
    if (node.op !== 'Dropout') continue;
    const training = node.inputs[2] ? g.constValue(node.inputs[2]) : [0];
    if (!training || training[0] === 0) continue;
    const ratio = node.inputs[1] ? g.constValue(node.inputs[1]) : [0.5];
    if (!ratio) throw new Error(`${node.name} (Dropout): ratio must be a constant`);
    if (node.outputs[1])
      throw new Error(
        `${node.name} (Dropout): its mask output is read by another node; seeded dropout cannot provide it`,
      );
    const x = g.value(node.inputs[0]);
    const y = node.outputs[0];
    const before = g.nodes.length;
    const out = g.insertAt(i, () =>
      g.scope(`${node.name}/seeded`, () => {
        if (ratio[0] === 0) return x;
        const u = seededUniform(g, x, seed, hashString(node.name));
        const keep = g.op1('GreaterOrEqual', [u, g.constant(ratio[0], 'float32', [])]);
        const scaled = g.op1('Mul', [x, g.constant(1 / (1 - ratio[0]), x.dtype, [])]);
        return g.op1('Where', [keep, scaled, g.constant(0, x.dtype, [])]);
      }),
    );
    const added = g.nodes.length - before;
    g.nodes.splice(i + added, 1); // the original Dropout node
    g.replaceUses(y, out.name);
    i += added - 1;
    count++;
  }
  return count;
}

/** The graph for evaluation and inference: every Dropout node becomes the identity. */
export function withoutDropout(g: Graph): Graph {
  const out = g.clone();
  for (let i = out.nodes.length - 1; i >= 0; i--) {
    const node = out.nodes[i];
    if (node.op !== 'Dropout') continue;
    if (node.outputs[1]) throw new Error(`${node.name} (Dropout): its mask output is read; cannot remove it`);
    out.nodes.splice(i, 1);
    out.replaceUses(node.outputs[0], node.inputs[0]);
  }
  return out;
}
