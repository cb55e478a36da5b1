// A plain low-rank branch on a module's output, y + (x·Aᵀ·Bᵀ)·scale with A [r, in] and B [out, r] (PEFT layout):
// what the reference fixtures and the BERT benchmark attach to projections.
import type { Graph, Value } from '../../native/onnx/graph.js';
import type { BuiltModel } from '../../native/models/index.js';

export function addLowRank(
  g: Graph,
  m: BuiltModel,
  module: string,
  r: number,
  scale: number,
  names = { A: `lora.${module}.lora_A`, B: `lora.${module}.lora_B` },
): [Value, Value] {
  const rec = m.modules.find((x) => x.name === module && x.input && x.output);
  if (!rec)
    throw new Error(
      `no module ${module} (modules: ${m.modules
        .map((x) => x.name)
        .slice(0, 8)
        .join(', ')}, …)`,
    );
  const A = g.input(names.A, 'float32', [r, rec.in!]);
  const B = g.input(names.B, 'float32', [rec.out!, r]);
  g.spliceAfter(rec.output!, (y) => {
    const h = g.op1('FusedMatMul', [g.op1('FusedMatMul', [rec.input!, A], { transB: 1 }), B], { transB: 1 });
    return g.op1('Add', [y, g.op1('Mul', [h, g.constant(scale, 'float32', [])])]);
  });
  return [A, B];
}
