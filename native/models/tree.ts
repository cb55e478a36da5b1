// The module tree of a model as data: every module by its Hugging Face name, type, parameters and counts, with
// repeated blocks folded (layer.0-11) and totals.
import type { BuiltModel } from './types.js';
import type { TreeNode } from '../contract/types.js';

export type { TreeNode } from '../contract/types.js';

export interface ModelTree {
  architecture: string;
  model_type: string;
  params_total: number;
  /** Of which weights that the folder lacked and the task head created. */
  params_new: number;
  root: TreeNode;
  /** Flat list of every module, depth first (folded). */
  modules: {
    name: string;
    type: string;
    params: number;
    shapes: Record<string, number[]>;
    repeat: number;
    delta?: string[];
  }[];
}

const numel = (s: number[]): number => s.reduce((a, b) => a * b, 1);

function containerType(key: string, childKeys: string[]): string {
  if (childKeys.length && childKeys.every((k) => /^\d+$/.test(k))) return 'ModuleList';
  if (/^\d+$/.test(key)) return 'Block';
  if (/attn|attention/i.test(key)) return 'Attention';
  if (/mlp|DenseReluDense|intermediate|ffn/i.test(key)) return 'MLP';
  if (/^(embeddings)$/.test(key)) return 'Embeddings';
  return 'Module';
}

function signature(n: TreeNode): string {
  return `${n.type}${n.delta ? `<${n.delta.join('+')}>` : ''}(${Object.entries(n.params)
    .map(([k, s]) => `${k}:${s.join('x')}`)
    .join(',')})[${n.children.map((c) => `${c.key}=${signature(c)}`).join(';')}]`;
}

function rename(n: TreeNode, from: string, to: string): void {
  n.name = to + n.name.slice(from.length);
  for (const c of n.children) rename(c, from, to);
}

/** Folds runs of numbered siblings with identical structure into one node "a-b" ×(b−a+1). */
function fold(n: TreeNode): void {
  for (const c of n.children) fold(c);
  if (n.type !== 'ModuleList') return;
  const out: TreeNode[] = [];
  let i = 0;
  while (i < n.children.length) {
    let j = i;
    const sig = signature(n.children[i]);
    while (
      j + 1 < n.children.length &&
      signature(n.children[j + 1]) === sig &&
      Number(n.children[j + 1].key) === Number(n.children[j].key) + 1
    )
      j++;
    const first = n.children[i];
    if (j > i) {
      const key = `${first.key}-${n.children[j].key}`;
      rename(first, first.name, first.name.slice(0, first.name.length - first.key.length) + key);
      first.key = key;
      first.repeat = j - i + 1;
    }
    out.push(first);
    i = j + 1;
  }
  n.children = out;
}

function total(n: TreeNode): number {
  const own = Object.values(n.params).reduce((a, s) => a + numel(s), 0);
  n.count = (own + n.children.reduce((a, c) => a + total(c), 0)) * n.repeat;
  return n.count;
}

export function moduleTree(m: BuiltModel, deltas?: Map<string, string[]>): ModelTree {
  const root: TreeNode = { name: '', key: '', type: m.architecture, params: {}, count: 0, repeat: 1, children: [] };
  const byName = new Map<string, TreeNode>([['', root]]);
  const node = (name: string): TreeNode => {
    const hit = byName.get(name);
    if (hit) return hit;
    const cut = name.lastIndexOf('.');
    const parent = node(cut < 0 ? '' : name.slice(0, cut));
    const n: TreeNode = { name, key: name.slice(cut + 1), type: '', params: {}, count: 0, repeat: 1, children: [] };
    parent.children.push(n);
    byName.set(name, n);
    return n;
  };
  const seen = new Set<string>();
  for (const mod of m.modules) {
    const n = node(mod.name);
    n.type = mod.type;
    for (const p of mod.params) {
      if (seen.has(p.name)) continue; // a weight shared by two modules (tied) is counted once
      seen.add(p.name);
      n.params[p.name.slice(mod.name.length + 1)] = p.shape;
    }
  }
  // Weights of the folder no module uses (e.g. a pooler a task does not need) still count.
  for (const [name, ref] of m.builder.folder.weights) {
    if (seen.has(name)) continue;
    seen.add(name);
    const cut = name.lastIndexOf('.');
    const n = node(cut < 0 ? name : name.slice(0, cut));
    n.params[name.slice(cut + 1)] = ref.shape;
  }
  for (const [name, methods] of deltas ?? []) node(name).delta = methods;
  const typeAll = (n: TreeNode): void => {
    for (const c of n.children) typeAll(c);
    n.children.sort((a, b) => (/^\d+$/.test(a.key) && /^\d+$/.test(b.key) ? Number(a.key) - Number(b.key) : 0));
    if (!n.type)
      n.type = containerType(
        n.key,
        n.children.map((c) => c.key),
      );
  };
  typeAll(root);
  fold(root);
  total(root);
  const modules: ModelTree['modules'] = [];
  const walk = (n: TreeNode): void => {
    if (n !== root)
      modules.push({
        name: n.name,
        type: n.type,
        params: n.count,
        shapes: n.params,
        repeat: n.repeat,
        ...(n.delta ? { delta: n.delta } : {}),
      });
    for (const c of n.children) walk(c);
  };
  walk(root);
  return {
    architecture: m.architecture,
    model_type: m.modelType,
    params_total: root.count,
    params_new: Object.values(m.created).reduce((a, t) => a + t.data.length, 0),
    root,
    modules,
  };
}

const fmt = (n: number): string => n.toLocaleString('en-US');

/** A readable tree for a terminal. */
export function renderTree(t: ModelTree): string {
  const lines = [
    `${t.architecture} (${t.model_type}) — ${fmt(t.params_total)} parameters${t.params_new ? `, ${fmt(t.params_new)} of them new (task head)` : ''}`,
  ];
  const rows: [string, string, string, string][] = [];
  const walk = (n: TreeNode, prefix: string, last: boolean, depth: number): void => {
    const label = depth === 0 ? '' : `${prefix}${last ? '└─ ' : '├─ '}${n.key}${n.repeat > 1 ? ` ×${n.repeat}` : ''}`;
    const shapes = Object.entries(n.params)
      .map(([k, s]) => `${k}[${s.join('×')}]`)
      .join(' ');
    if (depth > 0) rows.push([label, n.delta ? `${n.type} ◆ ${n.delta.join(' + ')}` : n.type, shapes, fmt(n.count)]);
    n.children.forEach((c, i) =>
      walk(c, depth === 0 ? '' : prefix + (last ? '   ' : '│  '), i === n.children.length - 1, depth + 1),
    );
  };
  walk(t.root, '', true, 0);
  const w0 = Math.max(...rows.map((r) => r[0].length)),
    w1 = Math.max(...rows.map((r) => r[1].length)),
    w2 = Math.max(...rows.map((r) => r[2].length));
  for (const r of rows) lines.push(`${r[0].padEnd(w0)}  ${r[1].padEnd(w1)}  ${r[2].padEnd(w2)}  ${r[3].padStart(12)}`);
  return lines.join('\n');
}
