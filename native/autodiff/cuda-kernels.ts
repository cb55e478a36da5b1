// The onnxruntime CUDA kernels that our gradient rules and their checks rely on: op, opset range, the element types
// the kernel computes correctly, and the source it was read from (github.com/microsoft/onnxruntime, paths under
// onnxruntime/; registrations in core/providers/cuda/cuda_execution_provider.cc). The typed kernel classes were also
// checked against the RTTI names compiled into the provider we install (onnxruntime 1.29.0, CUDA 13). A node whose
// (op, dtype) is missing here is either placed on the CPU by onnxruntime (a copy each way, per step) or, worse,
// accepted by a kernel that fails at run time: ScatterND is registered for every type, but its add reduction throws
// "element_type 11 not implemented" for double — the reason this table lists what computes, not what registers.
import type { DType } from '../onnx/dtype.js';
import type { Graph, Node } from '../onnx/graph.js';

export interface CudaKernel {
  op: string;
  domain?: string;
  /** The registration that serves a model of our opset (Graph.opset = 20). */
  since: number;
  until?: number;
  /** Element types computed correctly, or 'all' for kernels that only move data. */
  types: DType[] | 'all';
  /** Which value's type selects the kernel: an input index (default 0) or the first output. */
  typeOf?: number | 'output';
  /** Scatter ops: only for nodes with this `reduction` attribute (absent means 'none'). */
  reduction?: string;
  /** No CUDA kernel in onnxruntime's inference build: the node runs on the CPU provider. */
  cpuOnly?: boolean;
  /** Its float64 kernel rounds to float32 inside, so float64 results carry float32 error (said where). */
  float64InFloat32?: string;
  source: string;
}

const FLOATS: DType[] = ['float32', 'float64', 'float16', 'bfloat16'];
const IEEE: DType[] = ['float32', 'float64', 'float16'];
const NUMBERS: DType[] = [...FLOATS, 'int32', 'int64', 'uint32', 'uint64', 'int8', 'uint8'];
const COMPARED: DType[] = ['float32', 'float64', 'float16', 'int32', 'int64', 'uint32', 'uint64'];
const SOFTMAX_IN_FLOAT =
  'core/providers/cuda/math/softmax_warpwise_impl.cuh and softmax_blockwise_impl.cuh evaluate exp and log as float';

export const CUDA_KERNELS: CudaKernel[] = [
  ...['Add', 'Sub', 'Mul', 'Div'].map((op) => ({
    op,
    since: 14,
    types: NUMBERS,
    source: 'core/providers/cuda/math/binary_elementwise_ops.cc',
  })),
  {
    op: 'Pow',
    since: 15,
    types: ['float32', 'float64', 'float16', 'int32', 'int64'],
    source: 'core/providers/cuda/math/binary_elementwise_ops.cc',
  },
  ...['Equal', 'Less', 'Greater'].map((op) => ({
    op,
    since: 13,
    types: op === 'Equal' ? [...COMPARED, 'bool' as DType] : COMPARED,
    source: 'core/providers/cuda/math/binary_elementwise_ops.cc',
  })),
  { op: 'Not', since: 1, types: ['bool'], source: 'core/providers/cuda/math/unary_elementwise_ops.cc' },
  ...['Neg', 'Abs', 'Sign'].map((op) => ({
    op,
    since: 13,
    types: NUMBERS,
    source: 'core/providers/cuda/math/unary_elementwise_ops.cc',
  })),
  ...['Exp', 'Log', 'Sqrt', 'Reciprocal', 'Erf'].map((op) => ({
    op,
    since: 13,
    types: IEEE,
    source: 'core/providers/cuda/math/unary_elementwise_ops.cc',
  })),
  ...['Sigmoid', 'Tanh', 'Relu'].map((op) => ({
    op,
    since: op === 'Relu' ? 14 : 13,
    types: FLOATS,
    source: 'core/providers/cuda/activation/activations.cc',
  })),
  {
    op: 'Where',
    since: 16,
    types: [...FLOATS, 'int32', 'int64', 'uint8'],
    typeOf: 1,
    source: 'core/providers/cuda/tensor/where.cc',
  },
  { op: 'Cast', since: 19, types: [...NUMBERS, 'bool'], source: 'core/providers/cuda/tensor/cast_op.cc' },
  { op: 'Sum', since: 13, types: FLOATS, source: 'core/providers/cuda/math/variadic_elementwise_ops.cc' },
  ...(
    [
      ['Expand', 13, 'expand.cc'],
      ['Reshape', 19, 'reshape.cc'],
      ['Squeeze', 13, 'squeeze.cc'],
      ['Unsqueeze', 13, 'unsqueeze.cc'],
      ['Transpose', 13, 'transpose.cc'],
      ['Concat', 13, 'concat.cc'],
      ['Split', 18, 'split.cc'],
      ['Shape', 19, 'shape_op.cc'],
      ['Size', 19, 'size.cc'],
      ['Identity', 19, 'identity_op.cc'],
      ['Gather', 13, 'gather.cc'],
      ['GatherElements', 13, 'gather_elements.cc'],
      ['Slice', 13, 'slice.cc'],
    ] as const
  ).map(([op, since, file]) => ({
    op,
    since,
    types: 'all' as const,
    source: `core/providers/cuda/tensor/${file}`,
  })),
  {
    op: 'Pad',
    since: 19,
    types: ['float32', 'float64', 'float16', 'bool'],
    source: 'core/providers/cuda/tensor/pad.cc',
  },
  {
    // The cross-entropy of a training step (train/step.ts) counts its rows with it.
    op: 'Range',
    since: 11,
    types: ['float32', 'float64', 'int32', 'int64'],
    source: 'core/providers/cuda/generator/range.cc',
  },
  {
    op: 'ConstantOfShape',
    since: 20,
    types: 'all',
    typeOf: 'output',
    source: 'core/providers/cuda/generator/constant_of_shape.cc',
  },
  {
    op: 'ScatterElements',
    since: 18,
    reduction: 'none',
    types: 'all',
    source: 'core/providers/cuda/tensor/scatter_elements.cc',
  },
  {
    // Dispatched on element size (1/2/4/8 bytes → int8/half/float/double): bfloat16 would be added as half.
    op: 'ScatterElements',
    since: 18,
    reduction: 'add',
    types: IEEE,
    source: 'core/providers/cuda/tensor/scatter_elements.cc, gather_elements_impl.cu (FuncAdd)',
  },
  { op: 'ScatterND', since: 18, reduction: 'none', types: 'all', source: 'core/providers/cuda/tensor/scatter_nd.cc' },
  {
    op: 'ScatterND',
    since: 18,
    reduction: 'add',
    types: ['float32', 'float16'],
    source: 'core/providers/cuda/tensor/scatter_nd.cc, scatter_nd_impl.cu (_ScatterNDKernelReduction: float, half)',
  },
  {
    op: 'ReduceSum',
    since: 13,
    types: [...FLOATS, 'int32', 'int64'],
    source: 'core/providers/cuda/reduction/reduction_ops.cc',
  },
  ...['ReduceMean', 'ReduceProd'].map((op) => ({
    op,
    since: 18,
    types: [...IEEE, 'int32' as DType],
    source: 'core/providers/cuda/reduction/reduction_ops.cc',
  })),
  { op: 'ReduceSumSquare', since: 18, types: IEEE, source: 'core/providers/cuda/reduction/reduction_ops.cc' },
  { op: 'ReduceLogSumExp', since: 18, types: IEEE, source: 'core/providers/cuda/reduction/reduction_ops.cc' },
  { op: 'MatMul', since: 13, types: FLOATS, source: 'core/providers/cuda/math/matmul.cc' },
  { op: 'Gemm', since: 13, types: FLOATS, source: 'core/providers/cuda/math/gemm.cc' },
  ...['Softmax', 'LogSoftmax'].map((op) => ({
    op,
    since: 13,
    types: FLOATS,
    float64InFloat32: SOFTMAX_IN_FLOAT,
    source: 'core/providers/cuda/math/softmax.cc',
  })),
  {
    op: 'Dropout',
    since: 13,
    types: FLOATS,
    float64InFloat32: 'core/providers/cuda/nn/dropout_impl.cu multiplies static_cast<float>(x) by the mask and scale',
    source: 'core/providers/cuda/nn/dropout.cc',
  },
  {
    op: 'SoftmaxCrossEntropyLoss',
    since: 13,
    types: FLOATS,
    cpuOnly: true,
    // Placed on the CPU, or expanded into its ONNX function (LogSoftmax …), whose CUDA LogSoftmax is float inside.
    float64InFloat32: `when expanded into its function body: ${SOFTMAX_IN_FLOAT}`,
    source: 'orttraining/training_ops/cuda/loss (training builds only)',
  },
  { op: 'LayerNormalization', since: 17, types: FLOATS, source: 'core/providers/cuda/nn/layer_norm.cc' },
  { op: 'SimplifiedLayerNormalization', since: 1, types: FLOATS, source: 'core/providers/cuda/nn/layer_norm.cc' },
  { op: 'Gelu', since: 20, types: FLOATS, source: 'core/providers/cuda/tensor/gelu.cc' },
  ...(
    [
      ['FusedMatMul', 'math/fused_matmul.cc'],
      ['FastGelu', 'bert/fast_gelu.cc'],
      ['QuickGelu', 'activation/activations.cc'],
    ] as const
  ).map(([op, file]) => ({
    op,
    domain: 'com.microsoft',
    since: 1,
    types: FLOATS,
    source: `contrib_ops/cuda/${file}`,
  })),
  {
    // Flash attention for float16 self-attention without a mask or bias (causal included); otherwise cutlass's
    // memory-efficient kernel or the unfused one. Registered for float and MLFloat16 only.
    op: 'MultiHeadAttention',
    domain: 'com.microsoft',
    since: 1,
    types: ['float32', 'float16'],
    source: 'contrib_ops/cuda/bert/multihead_attention.cc',
  },
  {
    op: 'RotaryEmbedding',
    domain: 'com.microsoft',
    since: 1,
    types: ['float32', 'float16', 'bfloat16'],
    source: 'contrib_ops/cuda/bert/rotary_embedding.cc',
  },
];

export interface CudaPlacement {
  node: string;
  op: string;
  dtype: DType;
  /** 'none': no kernel computes it; 'cpu': onnxruntime runs it on the CPU provider. */
  problem: 'none' | 'cpu';
}

function kernelFor(g: Graph, n: Node): { kernel?: CudaKernel; dtype: DType } {
  const domain = n.domain === 'ai.onnx' ? '' : n.domain;
  const candidates = CUDA_KERNELS.filter(
    (k) =>
      k.op === n.op &&
      (k.domain ?? '') === domain &&
      k.since <= (domain ? 1 : g.opset) &&
      (k.until ?? Infinity) >= (domain ? 1 : g.opset) &&
      (k.reduction === undefined || k.reduction === ((n.attrs.reduction as string | undefined) ?? 'none')),
  );
  const typeOf = candidates[0]?.typeOf ?? 0;
  const name = typeOf === 'output' ? n.outputs[0] : (n.inputs[typeOf] ?? n.inputs.find((i) => i));
  const dtype = g.value(name).dtype;
  const fits = (k: CudaKernel, t: DType): boolean => k.types === 'all' || k.types.includes(t);
  const outType = n.op === 'Cast' ? g.value(n.outputs[0]).dtype : dtype;
  return { kernel: candidates.find((k) => fits(k, dtype) && fits(k, outType)), dtype };
}

/** The nodes of `g` (or of `nodes`) that no CUDA kernel computes, or that onnxruntime sends to the CPU provider. */
export function cudaPlacementProblems(g: Graph, nodes: Node[] = g.nodes): CudaPlacement[] {
  const out: CudaPlacement[] = [];
  for (const n of nodes) {
    const { kernel, dtype } = kernelFor(g, n);
    if (!kernel) out.push({ node: n.name, op: n.op, dtype, problem: 'none' });
    else if (kernel.cpuOnly) out.push({ node: n.name, op: n.op, dtype, problem: 'cpu' });
  }
  return out;
}

/** Why float64 results of `g` on CUDA carry float32 rounding (empty when they do not). */
export function float64InFloat32OnCuda(g: Graph): string[] {
  const why = new Set<string>();
  for (const n of g.nodes) {
    const { kernel, dtype } = kernelFor(g, n);
    if (dtype === 'float64' && kernel?.float64InFloat32) why.add(`${n.op}: ${kernel.float64InFloat32}`);
  }
  return [...why];
}
