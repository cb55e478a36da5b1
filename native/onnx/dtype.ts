// Element types the engine understands, with their ONNX and safetensors names.

export type DType =
  'float32' | 'float16' | 'bfloat16' | 'float64' | 'int64' | 'int32' | 'uint32' | 'uint64' | 'int8' | 'uint8' | 'bool';

interface DTypeInfo {
  onnx: number; // TensorProto.DataType
  safetensors: string;
  bytes: number;
  float: boolean;
}

export const DTYPES: Record<DType, DTypeInfo> = {
  float32: { onnx: 1, safetensors: 'F32', bytes: 4, float: true },
  uint8: { onnx: 2, safetensors: 'U8', bytes: 1, float: false },
  int8: { onnx: 3, safetensors: 'I8', bytes: 1, float: false },
  int32: { onnx: 6, safetensors: 'I32', bytes: 4, float: false },
  int64: { onnx: 7, safetensors: 'I64', bytes: 8, float: false },
  bool: { onnx: 9, safetensors: 'BOOL', bytes: 1, float: false },
  float16: { onnx: 10, safetensors: 'F16', bytes: 2, float: true },
  float64: { onnx: 11, safetensors: 'F64', bytes: 8, float: true },
  uint32: { onnx: 12, safetensors: 'U32', bytes: 4, float: false },
  uint64: { onnx: 13, safetensors: 'U64', bytes: 8, float: false },
  bfloat16: { onnx: 16, safetensors: 'BF16', bytes: 2, float: true },
};

export const isFloat = (d: DType): boolean => DTYPES[d].float;
export const bytesOf = (d: DType): number => DTYPES[d].bytes;

export function dtypeFromSafetensors(code: string, where: string): DType {
  for (const [name, info] of Object.entries(DTYPES)) if (info.safetensors === code) return name as DType;
  throw new Error(
    `${where}: unknown dtype "${code}" (expected one of ${Object.values(DTYPES)
      .map((d) => d.safetensors)
      .join(', ')})`,
  );
}

export function dtypeFromOnnx(code: number): DType {
  for (const [name, info] of Object.entries(DTYPES)) if (info.onnx === code) return name as DType;
  throw new Error(`unknown ONNX element type ${code}`);
}

export type TypedArray =
  | Float32Array
  | Float64Array
  | Int32Array
  | Uint32Array
  | Int8Array
  | Uint8Array
  | Uint16Array
  | BigInt64Array
  | BigUint64Array;

/** A view of raw little-endian bytes as the JS array type onnxruntime-node expects for `dtype`. */
export function viewAs(dtype: DType, bytes: Uint8Array): TypedArray {
  const copy = bytes.byteOffset % 8 === 0 ? bytes : bytes.slice();
  const { buffer, byteOffset, byteLength } = copy;
  const n = byteLength / bytesOf(dtype);
  switch (dtype) {
    case 'float32':
      return new Float32Array(buffer, byteOffset, n);
    case 'float64':
      return new Float64Array(buffer, byteOffset, n);
    case 'float16':
    case 'bfloat16':
      return new Uint16Array(buffer, byteOffset, n);
    case 'int64':
      return new BigInt64Array(buffer, byteOffset, n);
    case 'uint64':
      return new BigUint64Array(buffer, byteOffset, n);
    case 'int32':
      return new Int32Array(buffer, byteOffset, n);
    case 'uint32':
      return new Uint32Array(buffer, byteOffset, n);
    case 'int8':
      return new Int8Array(buffer, byteOffset, n);
    case 'uint8':
    case 'bool':
      return new Uint8Array(buffer, byteOffset, n);
  }
}

export function bytesView(a: TypedArray): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

/** The onnxruntime-node tensor type name for a dtype. */
export function ortType(
  d: DType,
):
  'float32' | 'float16' | 'bfloat16' | 'float64' | 'int64' | 'int32' | 'uint32' | 'uint64' | 'int8' | 'uint8' | 'bool' {
  return d;
}

/** Float32 values of raw little-endian float32/float16/bfloat16 bytes. */
export function toFloat32(dtype: DType, bytes: Uint8Array): Float32Array {
  const src = bytes.byteOffset % 4 === 0 ? bytes : bytes.slice();
  if (dtype === 'float32') return new Float32Array(src.buffer, src.byteOffset, src.byteLength / 4).slice();
  const u16 = new Uint16Array(src.buffer.slice(src.byteOffset, src.byteOffset + src.byteLength));
  const out = new Float32Array(u16.length);
  if (dtype === 'bfloat16') {
    const u32 = new Uint32Array(out.buffer);
    for (let i = 0; i < u16.length; i++) u32[i] = u16[i] << 16;
    return out;
  }
  if (dtype !== 'float16') throw new Error(`cannot read ${dtype} as float32`);
  for (let i = 0; i < u16.length; i++) {
    const h = u16[i],
      s = h & 0x8000 ? -1 : 1,
      e = (h >> 10) & 0x1f,
      f = h & 0x3ff;
    out[i] = e === 0 ? s * f * 2 ** -24 : e === 31 ? (f ? NaN : s * Infinity) : s * (1 + f / 1024) * 2 ** (e - 15);
  }
  return out;
}

/** IEEE half-precision bits of float32 values, rounded to nearest even (overflow to ±Infinity). */
export function toFloat16Bits(src: Float32Array): Uint16Array {
  const out = new Uint16Array(src.length);
  const f = new Float32Array(1),
    u = new Uint32Array(f.buffer);
  for (let i = 0; i < src.length; i++) {
    f[0] = src[i];
    const x = u[0];
    const sign = (x >>> 16) & 0x8000;
    const exp = (x >>> 23) & 0xff,
      mant = x & 0x7fffff;
    if (exp === 0xff) {
      out[i] = sign | 0x7c00 | (mant ? 0x200 : 0);
      continue;
    }
    const e = exp - 127 + 15;
    if (e >= 0x1f) {
      out[i] = sign | 0x7c00;
      continue;
    }
    if (e <= 0) {
      if (e < -10) {
        out[i] = sign;
        continue;
      }
      const m = mant | 0x800000,
        shift = 14 - e;
      let h = m >>> shift;
      const rem = m & ((1 << shift) - 1),
        half = 1 << (shift - 1);
      if (rem > half || (rem === half && h & 1)) h++;
      out[i] = sign | h;
      continue;
    }
    let h = (e << 10) | (mant >>> 13);
    const rem = mant & 0x1fff;
    if (rem > 0x1000 || (rem === 0x1000 && h & 1)) h++;
    out[i] = sign | h;
  }
  return out;
}
