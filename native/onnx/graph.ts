// A typed ONNX graph builder: every value carries a dtype and a (possibly symbolic) shape, checked as it is built.
import { type DType, type TypedArray, DTYPES, isFloat } from './dtype.js';
import { type Shape, fmtShape, dimEq } from './shape.js';
import type { TensorRef } from './safetensors.js';
import { OPS, type AttrKind, type InferCtx, type Widen } from './ops.js';
import type { Attr, HostTensor, Value } from './values.js';

export type { Attr, HostTensor, Value } from './values.js';

export interface Node {
  name: string;
  op: string;
  domain: string;
  inputs: string[]; // '' marks an omitted optional input
  outputs: string[];
  attrs: Record<string, Attr>;
}

export type Initializer = { kind: 'host'; tensor: HostTensor } | { kind: 'external'; ref: TensorRef };

export interface OpOptions {
  /** Number of outputs (default 1, or what the op's schema says). */
  outputs?: number;
  /** Output names; generated when absent. */
  names?: string[];
  /** Output dtype/shape given by the caller (used by gradient rules that know them); skips inference. */
  infos?: { dtype: DType; shape: Shape }[];
}

export type ValueLike = Value | string;

export class Graph {
  readonly values = new Map<string, Value>();
  readonly nodes: Node[] = [];
  readonly inputs: string[] = [];
  readonly outputs: string[] = [];
  readonly initializers = new Map<string, Initializer>();
  /** Values whose type and shape the model states (value_info): see declare. */
  readonly declared = new Set<string>();
  readonly opset = 20;
  private scopes: string[] = [];
  private used = new Set<string>();
  private constCache = new Map<string, Value>();

  /** A name not used yet in this graph, under the current scope. */
  fresh(base: string): string {
    const stem = [...this.scopes, base].join('/');
    let name = stem;
    for (let i = 1; this.used.has(name); i++) name = `${stem}_${i}`;
    this.used.add(name);
    return name;
  }

  /** Runs `fn` with generated names prefixed by `scope` (e.g. a Hugging Face module name). */
  scope<T>(scope: string, fn: () => T): T {
    this.scopes.push(scope);
    try {
      return fn();
    } finally {
      this.scopes.pop();
    }
  }

  value(v: ValueLike): Value {
    if (typeof v !== 'string') return v;
    const found = this.values.get(v);
    if (!found) throw new Error(`graph: no value named "${v}"`);
    return found;
  }

  private define(name: string, dtype: DType, shape: Shape): Value {
    if (this.values.has(name)) throw new Error(`graph: value "${name}" is defined twice`);
    this.used.add(name);
    const v: Value = { name, dtype, shape: [...shape] };
    this.values.set(name, v);
    return v;
  }

  input(name: string, dtype: DType, shape: Shape): Value {
    const v = this.define(name, dtype, shape);
    this.inputs.push(name);
    return v;
  }

  /**
   * A weight. `expect` is what the graph needs; a tensor of another shape or dtype is an error naming both.
   * External tensors stay in their safetensors file (zero copy).
   */
  initializer(name: string, data: HostTensor | TensorRef, expect?: { dtype?: DType; shape?: Shape }): Value {
    const isRef = 'offset' in data;
    if (expect?.dtype && expect.dtype !== data.dtype) {
      throw new Error(
        `weight "${name}"${isRef ? ` in ${data.file}` : ''}: dtype ${data.dtype}, the graph expects ${expect.dtype}`,
      );
    }
    if (
      expect?.shape &&
      (expect.shape.length !== data.shape.length || !expect.shape.every((d, i) => dimEq(d, data.shape[i])))
    ) {
      throw new Error(
        `weight "${name}"${isRef ? ` in ${data.file}` : ''}: shape ${fmtShape(data.shape)}, the graph expects ${fmtShape(expect.shape)}`,
      );
    }
    if (!isRef) {
      const n = data.shape.reduce((a, b) => a * b, 1);
      if (data.data.length !== n)
        throw new Error(`weight "${name}": ${data.data.length} elements for shape ${fmtShape(data.shape)}`);
    }
    const v = this.define(name, data.dtype, data.shape);
    this.initializers.set(name, isRef ? { kind: 'external', ref: data } : { kind: 'host', tensor: data });
    return v;
  }

  /** A small constant, deduplicated. Integer dtypes take numbers and store them exactly. */
  constant(values: number | number[], dtype: DType = 'float32', shape?: number[]): Value {
    const vals = typeof values === 'number' ? [values] : values;
    const shp = shape ?? (typeof values === 'number' ? [] : [vals.length]);
    const key = `${dtype}|${shp.join(',')}|${vals.join(',')}`;
    const hit = this.constCache.get(key);
    if (hit) return hit;
    const v = this.initializer(this.fresh('const'), { dtype, shape: shp, data: makeArray(dtype, vals) });
    this.constCache.set(key, v);
    return v;
  }

  /** The values of a constant input (host initializer), or undefined when it is computed at run time. */
  constValue(v: ValueLike): number[] | undefined {
    const name = typeof v === 'string' ? v : v.name;
    const init = this.initializers.get(name);
    if (!init || init.kind !== 'host') return undefined;
    return Array.from(init.tensor.data as ArrayLike<number | bigint>, (x) => Number(x));
  }

  /** Adds one node; outputs are shape-inferred from the op's schema (or taken from opts.infos). */
  op(
    op: string,
    inputs: (ValueLike | null | undefined)[],
    attrs: Record<string, Attr> = {},
    opts: OpOptions = {},
  ): Value[] {
    const schema = OPS[op];
    if (!schema) throw new Error(`graph: unknown op "${op}" (add it to native/onnx/ops.ts)`);
    const ins = inputs.map((i) => (i == null || i === '' ? undefined : this.value(i)));
    for (const a of Object.keys(attrs)) {
      if (!(a in schema.attrs))
        throw new Error(
          `graph: op ${op} has no attribute "${a}" (known: ${Object.keys(schema.attrs).join(', ') || 'none'})`,
        );
    }
    const nodeName = this.fresh(op);
    const nOut = opts.outputs ?? opts.names?.length ?? opts.infos?.length ?? schema.outputs ?? 1;
    const infos = opts.infos ?? schema.infer(this.inferCtx(nodeName, op, ins, attrs, nOut));
    const outs = infos
      .slice(0, nOut)
      .map((info, i) => this.define(opts.names?.[i] ?? this.fresh(`${op}_out${i || ''}`), info.dtype, info.shape));
    this.nodes.push({
      name: nodeName,
      op,
      domain: schema.domain ?? '',
      inputs: ins.map((v) => v?.name ?? ''),
      outputs: outs.map((v) => v.name),
      attrs,
    });
    return outs;
  }

  op1(
    op: string,
    inputs: (ValueLike | null | undefined)[],
    attrs: Record<string, Attr> = {},
    opts: OpOptions = {},
  ): Value {
    return this.op(op, inputs, attrs, opts)[0];
  }

  private inferCtx(
    node: string,
    op: string,
    ins: (Value | undefined)[],
    attrs: Record<string, Attr>,
    nOut: number,
  ): InferCtx {
    return {
      node,
      op,
      inputs: ins,
      nOut,
      attr: <T extends Attr>(name: string, dflt: T) => (name in attrs ? attrs[name] : dflt) as Widen<T>,
      has: (name: string) => name in attrs,
      constInts: (i: number) => (ins[i] ? this.constValue(ins[i]!) : undefined),
    };
  }

  /** Adds an output to an existing node (e.g. LayerNormalization's saved mean), inferring it again. */
  addNodeOutput(node: Node, index: number): Value {
    if (node.outputs[index]) return this.value(node.outputs[index]);
    const schema = OPS[node.op];
    const ins = node.inputs.map((n) => (n ? this.value(n) : undefined));
    const infos = schema.infer(this.inferCtx(node.name, node.op, ins, node.attrs, index + 1));
    const v = this.define(this.fresh(`${node.name}_out${index}`), infos[index].dtype, infos[index].shape);
    while (node.outputs.length < index) node.outputs.push('');
    node.outputs[index] = v.name;
    return v;
  }

  /** Runs `fn` and moves the nodes it adds to position `index` (to replace a node in place, keeping topological order). */
  insertAt<T>(index: number, fn: () => T): T {
    const start = this.nodes.length;
    const r = fn();
    const added = this.nodes.splice(start);
    this.nodes.splice(index, 0, ...added);
    return r;
  }

  /**
   * Inserts nodes right after the producer of `value` and makes every other reader of `value` read what `fn`
   * returns instead — how a delta is attached to a module's output (e.g. y + low-rank(x)).
   */
  spliceAfter(value: ValueLike, fn: (v: Value) => Value): Value {
    const v = this.value(value);
    const at = this.nodes.findIndex((n) => n.outputs.includes(v.name)) + 1;
    const before = this.nodes.length;
    const out = this.insertAt(at, () => fn(v));
    const added = new Set(this.nodes.slice(at, at + this.nodes.length - before));
    for (const n of this.nodes) if (!added.has(n)) n.inputs = n.inputs.map((i) => (i === v.name ? out.name : i));
    for (let i = 0; i < this.outputs.length; i++) if (this.outputs[i] === v.name) this.outputs[i] = out.name;
    return out;
  }

  /** Makes every reader of `from` read `to` instead (outputs included). */
  replaceUses(from: string, to: string): void {
    for (const n of this.nodes) n.inputs = n.inputs.map((i) => (i === from ? to : i));
    for (let i = 0; i < this.outputs.length; i++) if (this.outputs[i] === from) this.outputs[i] = to;
  }

  output(v: ValueLike, name?: string): Value {
    let val = this.value(v);
    if (name && name !== val.name) val = this.op1('Identity', [val], {}, { names: [name] });
    if (this.outputs.includes(val.name)) return val;
    this.outputs.push(val.name);
    return val;
  }

  /** Node that produces each value. */
  producers(): Map<string, Node> {
    const m = new Map<string, Node>();
    for (const n of this.nodes) for (const o of n.outputs) if (o) m.set(o, n);
    return m;
  }

  /**
   * States v's type and shape in the model (value_info), for a value whose shape onnxruntime's own inference cannot
   * derive (a Range's length) where one of its fusions needs it; onnxruntime keeps a stated dimension it cannot infer.
   */
  declare(v: Value): Value {
    this.declared.add(v.name);
    return v;
  }

  clone(): Graph {
    const g = new Graph();
    for (const [k, v] of this.values) g.values.set(k, v);
    for (const n of this.nodes)
      g.nodes.push({ ...n, inputs: [...n.inputs], outputs: [...n.outputs], attrs: { ...n.attrs } });
    g.inputs.push(...this.inputs);
    g.outputs.push(...this.outputs);
    for (const [k, v] of this.initializers) g.initializers.set(k, v);
    for (const u of this.used) g.used.add(u);
    for (const [k, v] of this.constCache) g.constCache.set(k, v);
    for (const d of this.declared) g.declared.add(d);
    return g;
  }

  /** Turns an initializer into a graph input (how trainable parameters are fed to a training step). */
  promoteToInput(name: string): Value {
    if (!this.initializers.delete(name)) throw new Error(`graph: "${name}" is not a weight of this graph`);
    this.inputs.push(name);
    return this.value(name);
  }

  /** Drops nodes, graph inputs and initializers that no output depends on. */
  prune(): void {
    const prod = this.producers();
    const live = new Set<string>();
    const stack = [...this.outputs];
    const liveNodes = new Set<Node>();
    while (stack.length) {
      const v = stack.pop()!;
      if (live.has(v)) continue;
      live.add(v);
      const n = prod.get(v);
      if (n && !liveNodes.has(n)) {
        liveNodes.add(n);
        for (const i of n.inputs) if (i) stack.push(i);
      }
    }
    const kept = this.nodes.filter((n) => liveNodes.has(n));
    this.nodes.length = 0;
    this.nodes.push(...kept);
    for (const k of [...this.initializers.keys()]) if (!live.has(k)) this.initializers.delete(k);
    const usedInputs = this.inputs.filter((i) => live.has(i));
    this.inputs.length = 0;
    this.inputs.push(...usedInputs);
    for (const n of this.nodes) {
      // Optional outputs nobody reads are dropped so the runtime need not compute them (a Split's are not optional).
      if (n.op === 'Split') continue;
      for (let i = 1; i < n.outputs.length; i++) if (n.outputs[i] && !live.has(n.outputs[i])) n.outputs[i] = '';
      while (n.outputs.length > 1 && n.outputs[n.outputs.length - 1] === '') n.outputs.pop();
    }
  }
}

export function makeArray(dtype: DType, vals: ArrayLike<number>): TypedArray {
  switch (dtype) {
    case 'float32':
      return Float32Array.from(vals);
    case 'float64':
      return Float64Array.from(vals);
    case 'int64':
      return BigInt64Array.from(Array.from(vals, (x) => BigInt(Math.trunc(x))));
    case 'uint64':
      return BigUint64Array.from(Array.from(vals, (x) => BigInt(Math.trunc(x))));
    case 'int32':
      return Int32Array.from(vals);
    case 'uint32':
      return Uint32Array.from(vals);
    case 'int8':
      return Int8Array.from(vals);
    case 'uint8':
    case 'bool':
      return Uint8Array.from(vals);
    default:
      throw new Error(`constant of dtype ${dtype} is not supported (use float32/float64 or an integer type)`);
  }
}

export const requireFloat = (v: Value, where: string): void => {
  if (!isFloat(v.dtype)) throw new Error(`${where}: expected a floating-point value, got ${v.name} of ${v.dtype}`);
};

export type { AttrKind };
export { DTYPES };
