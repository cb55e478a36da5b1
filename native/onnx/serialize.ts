// Graph → ONNX ModelProto bytes. Weights are inline, or external data pointing into the user's safetensors files.
import { basename, dirname } from 'node:path';
import onnxProto from 'onnx-proto';
import { DTYPES, bytesView } from './dtype.js';
import type { Attr, Graph, HostTensor, Value } from './graph.js';
import { OPS, type AttrKind } from './ops.js';

const { onnx } = onnxProto;

export interface SerializedModel {
  bytes: Uint8Array;
  /** The one folder holding every external weight file (symlinks resolved), if any weight is external. */
  externalFolder?: string;
  /** The graph's inputs, to check feeds against before onnxruntime sees them. */
  inputs: Value[];
  /** Bytes of all weights, inline and external. */
  weightBytes: number;
}

function valueInfo(v: Value): onnxProto.onnx.IValueInfoProto {
  return {
    name: v.name,
    type: {
      tensorType: {
        elemType: DTYPES[v.dtype].onnx,
        shape: { dim: v.shape.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) },
      },
    },
  };
}

function tensorProto(name: string, t: HostTensor): onnxProto.onnx.ITensorProto {
  return { name, dims: t.shape, dataType: DTYPES[t.dtype].onnx, rawData: bytesView(t.data) };
}

const KIND_CODE: Record<AttrKind, number> = { float: 1, int: 2, string: 3, tensor: 4, floats: 6, ints: 7 };

function attribute(op: string, name: string, kind: AttrKind, v: Attr): onnxProto.onnx.IAttributeProto {
  const a: onnxProto.onnx.IAttributeProto = { name, type: KIND_CODE[kind] };
  const bad = (): never => {
    throw new Error(`op ${op}: attribute ${name} must be ${kind}, got ${JSON.stringify(v)}`);
  };
  switch (kind) {
    case 'int':
      if (typeof v !== 'number' || !Number.isInteger(v)) bad();
      a.i = v as number;
      break;
    case 'float':
      if (typeof v !== 'number') bad();
      a.f = v as number;
      break;
    case 'ints':
      if (!Array.isArray(v)) bad();
      a.ints = v as number[];
      break;
    case 'floats':
      if (!Array.isArray(v)) bad();
      a.floats = v as number[];
      break;
    case 'string':
      if (typeof v !== 'string') bad();
      a.s = new TextEncoder().encode(v as string);
      break;
    case 'tensor':
      if (typeof v !== 'object' || Array.isArray(v)) bad();
      a.t = tensorProto('', v as HostTensor);
      break;
  }
  return a;
}

export function serialize(g: Graph, docString = ''): SerializedModel {
  let externalFolder: string | undefined;
  let weightBytes = 0;
  const initializer: onnxProto.onnx.ITensorProto[] = [];
  for (const [name, init] of g.initializers) {
    weightBytes += init.kind === 'host' ? init.tensor.data.byteLength : init.ref.length;
    if (init.kind === 'host') {
      initializer.push(tensorProto(name, init.tensor));
      continue;
    }
    const ref = init.ref;
    if (ref.length === 0) {
      // onnxruntime cannot read a zero-byte external span; an empty tensor is inline and costs nothing.
      initializer.push({ name, dims: ref.shape, dataType: DTYPES[ref.dtype].onnx, rawData: new Uint8Array(0) });
      continue;
    }
    const folder = dirname(ref.realFile);
    if (externalFolder && folder !== externalFolder) {
      throw new Error(
        `weight "${name}" lives in ${folder} but other weights live in ${externalFolder}: onnxruntime reads external weights from one folder`,
      );
    }
    externalFolder = folder;
    initializer.push({
      name,
      dims: ref.shape,
      dataType: DTYPES[ref.dtype].onnx,
      dataLocation: onnx.TensorProto.DataLocation.EXTERNAL,
      externalData: [
        { key: 'location', value: basename(ref.realFile) },
        { key: 'offset', value: String(ref.offset) },
        { key: 'length', value: String(ref.length) },
      ],
    });
  }
  const domains = new Set(g.nodes.map((n) => n.domain));
  const model: onnxProto.onnx.IModelProto = {
    irVersion: 9,
    producerName: 'delta-studio',
    docString,
    opsetImport: [
      { domain: '', version: g.opset },
      ...(domains.has('com.microsoft') ? [{ domain: 'com.microsoft', version: 1 }] : []),
    ],
    graph: {
      name: 'delta_studio',
      node: g.nodes.map((n) => ({
        name: n.name,
        opType: n.op,
        domain: n.domain,
        input: n.inputs,
        output: n.outputs,
        attribute: Object.entries(n.attrs).map(([k, v]) => attribute(n.op, k, OPS[n.op].attrs[k], v)),
      })),
      initializer,
      input: g.inputs.map((i) => valueInfo(g.value(i))),
      output: g.outputs.map((o) => valueInfo(g.value(o))),
      valueInfo: g.nodes.flatMap((n) =>
        n.outputs.filter((o) => o && g.declared.has(o)).map((o) => valueInfo(g.value(o))),
      ),
    },
  };
  return {
    bytes: onnx.ModelProto.encode(model).finish(),
    externalFolder,
    inputs: g.inputs.map((i) => g.value(i)),
    weightBytes,
  };
}
