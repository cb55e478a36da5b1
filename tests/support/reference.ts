// Reads the PyTorch reference outputs written by tests/fixtures/make_models.py.
import { join } from 'node:path';
import { viewAs } from '../../native/onnx/dtype.js';
import type { HostTensor } from '../../native/onnx/graph.js';
import { readSafetensorsHeader, readTensorBytes } from '../../native/onnx/safetensors.js';

export function readReference(dir: string): Map<string, HostTensor> {
  const h = readSafetensorsHeader(join(dir, 'reference.safetensors'));
  const out = new Map<string, HostTensor>();
  for (const [name, ref] of h.tensors)
    out.set(name, { dtype: ref.dtype, shape: ref.shape, data: viewAs(ref.dtype, readTensorBytes(ref)) });
  return out;
}

export const f64 = (t: HostTensor): Float64Array =>
  Float64Array.from(t.data as ArrayLike<number | bigint>, (x) => Number(x));

/**
 * ‖a − b‖ / ‖b‖ over the elements where `keep` (default all). `floor` (per element, RMS) keeps gradients that are
 * exactly zero in theory (a key bias under softmax) from comparing rounding noise with rounding noise.
 */
export function relErr(a: HostTensor, b: HostTensor, keep?: (i: number) => boolean, floor = 0): number {
  const x = f64(a),
    y = f64(b);
  if (x.length !== y.length) throw new Error(`sizes differ: ${a.shape} vs ${b.shape}`);
  let num = 0,
    den = 0;
  for (let i = 0; i < x.length; i++) {
    if (keep && !keep(i)) continue;
    num += (x[i] - y[i]) ** 2;
    den += y[i] ** 2;
  }
  return Math.sqrt(num) / Math.max(Math.sqrt(den), floor * Math.sqrt(x.length), 1e-30);
}
