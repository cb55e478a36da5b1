// Shapes with symbolic dimensions: a dim is a number or a name such as "batch", "seq" or a product "batch*seq".

export type Dim = number | string;
export type Shape = Dim[];

export const isStatic = (s: Shape): s is number[] => s.every((d) => typeof d === 'number');
export const numel = (s: number[]): number => s.reduce((a, b) => a * b, 1);
export const fmtShape = (s: Shape): string => `[${s.join(', ')}]`;

function splitTop(d: string): string[] {
  const parts: string[] = [];
  let depth = 0,
    cur = '';
  for (const ch of d) {
    if (ch === '(') depth++;
    if (ch === ')') depth--;
    if (ch === '*' && depth === 0) {
      parts.push(cur);
      cur = '';
    } else cur += ch;
  }
  parts.push(cur);
  return parts;
}

function factors(d: Dim): { k: number; syms: string[] } {
  if (typeof d === 'number') return { k: d, syms: [] };
  const syms: string[] = [];
  let k = 1;
  for (const f of splitTop(d)) {
    if (/^\d+$/.test(f)) k *= Number(f);
    else if (f.startsWith('(') && f.endsWith(')')) syms.push(f);
    else if (/[+\-/]/.test(f))
      syms.push(`(${f})`); // a sum or difference is one opaque factor
    else syms.push(f);
  }
  return { k, syms };
}

function fromFactors(k: number, syms: string[]): Dim {
  if (syms.length === 0) return k;
  const s = [...syms].sort();
  return k === 1 ? s.join('*') : `${k}*${s.join('*')}`;
}

export function dimMul(a: Dim, b: Dim): Dim {
  const fa = factors(a),
    fb = factors(b);
  return fromFactors(fa.k * fb.k, [...fa.syms, ...fb.syms]);
}

export function dimProduct(ds: Dim[]): Dim {
  return ds.reduce<Dim>((a, b) => dimMul(a, b), 1);
}

/** a / b when b's factors divide a's; undefined when that cannot be decided symbolically. */
export function dimDiv(a: Dim, b: Dim): Dim | undefined {
  const fa = factors(a),
    fb = factors(b);
  if (fb.k === 0 || fa.k % fb.k !== 0) return undefined;
  const rest = [...fa.syms];
  for (const s of fb.syms) {
    const i = rest.indexOf(s);
    if (i < 0) return undefined;
    rest.splice(i, 1);
  }
  return fromFactors(fa.k / fb.k, rest);
}

/** a + b, written canonically (constant first, then symbols in order) so equal sums compare equal. */
export function dimAdd(a: Dim, b: Dim): Dim {
  if (typeof a === 'number' && typeof b === 'number') return a + b;
  let k = 0;
  const syms: string[] = [];
  for (const d of [a, b]) {
    if (typeof d === 'number') {
      k += d;
      continue;
    }
    for (const t of d.startsWith('(') ? [d] : d.split('+')) {
      if (/^\d+$/.test(t)) k += Number(t);
      else syms.push(t);
    }
  }
  syms.sort();
  return [...(k ? [String(k)] : []), ...syms].join('+');
}

export const dimEq = (a: Dim, b: Dim): boolean =>
  a === b || (typeof a !== 'number' && typeof b !== 'number' && dimDiv(a, b) === 1);

/** Numpy broadcasting; throws naming both shapes when they cannot broadcast. */
export function broadcast(shapes: Shape[], where: string): Shape {
  const rank = Math.max(...shapes.map((s) => s.length));
  const out: Shape = [];
  for (let i = 0; i < rank; i++) {
    let d: Dim = 1;
    for (const s of shapes) {
      const k = i - (rank - s.length);
      if (k < 0) continue;
      const e = s[k];
      if (e === 1) continue;
      if (d === 1) d = e;
      else if (!dimEq(d, e))
        throw new Error(
          `${where}: shapes ${shapes.map(fmtShape).join(' and ')} do not broadcast (dim ${i}: ${d} vs ${e})`,
        );
    }
    out.push(d);
  }
  return out;
}

export const normAxis = (axis: number, rank: number, where: string): number => {
  const a = axis < 0 ? axis + rank : axis;
  if (a < 0 || a >= rank) throw new Error(`${where}: axis ${axis} is out of range for rank ${rank}`);
  return a;
};
