// What a graph is made of, as data: a typed value, a tensor held in memory, an attribute. Shared by the graph builder
// and the op table (which infers the values an op makes), so neither needs the other's module for its types.
import type { DType, TypedArray } from './dtype.js';
import type { Shape } from './shape.js';

export interface Value {
  readonly name: string;
  readonly dtype: DType;
  readonly shape: Shape;
}

export interface HostTensor {
  dtype: DType;
  shape: number[];
  data: TypedArray;
}

export type Attr = number | number[] | string | HostTensor;
