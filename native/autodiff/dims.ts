// Symbolic dimensions ("batch", "seq-1", "(seq-1)*batch") folded into anything: a number for given sizes (memory.ts),
// a run-time int64 tensor computed from the graph inputs' shapes (emit.ts).

export type DimOp = '+' | '-' | '*' | '/';

/**
 * Folds a dimension expression: `leaf` turns a number or a symbol into a T, `apply` combines two. Undefined when the
 * expression does not parse or a leaf is undefined.
 */
export function foldDim<T>(
  d: string,
  leaf: (token: string) => T | undefined,
  apply: (op: DimOp, a: T, b: T) => T,
): T | undefined {
  const tokens = d.match(/\d+|[A-Za-z_][\w.:/]*|[-+*/()]/g) ?? [];
  if (tokens.join('') !== d.replace(/\s+/g, '')) return undefined;
  let pos = 0;
  const atom = (): T | undefined => {
    const t = tokens[pos++];
    if (t !== '(') return t === undefined || ')+-*/'.includes(t) ? undefined : leaf(t);
    const v = sum();
    return tokens[pos++] === ')' ? v : undefined;
  };
  const chain = (next: () => T | undefined, ops: string) => (): T | undefined => {
    let v = next();
    while (v !== undefined && pos < tokens.length && ops.includes(tokens[pos])) {
      const op = tokens[pos++] as DimOp;
      const r = next();
      v = r === undefined ? undefined : apply(op, v, r);
    }
    return v;
  };
  const product = chain(atom, '*/');
  const sum = chain(product, '+-');
  const out = sum();
  return pos === tokens.length ? out : undefined;
}
