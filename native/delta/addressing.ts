// Which modules a delta modifies, addressed as OpenDelta and PEFT address them:
//  - modified_modules (OpenDelta): "query" matches any module whose name ends with ".query" (or is "query");
//    "[r]<regex>" matches where the regex's match ends the name and starts at a dot boundary; a key with "@"
//    ("attn@.q@") is matched against common structure names (structure.ts) so one config fits every family.
//  - target_modules (PEFT): a list is matched like modified_modules; a single string is a regular expression
//    that must match the whole name (re.fullmatch).
//  - exclude_modules: modules (and everything under them) that a key matches are left alone.
// A key matching a container (e.g. "attention", "attn@") selects the Linear/Conv1D modules inside it.
import type { ModuleRecord } from '../models/builder.js';
import type { BuiltModel } from '../models/types.js';
import { commonName } from './structure.js';

export interface Addressing {
  modified_modules?: string[];
  target_modules?: string[] | string;
  exclude_modules?: string[];
}

const CONTAINERS = ['Attention', 'FeedForward'];

type Key = { raw: string; common: boolean; test: (name: string) => boolean };

function compile(raw: string, field: string, fullmatch = false): Key {
  const common = raw.includes('@');
  const text = common ? raw.replaceAll('@', '') : raw;
  if (fullmatch || text.startsWith('[r]')) {
    const src = fullmatch ? text : text.slice(3);
    let re: RegExp;
    try {
      re = new RegExp(fullmatch ? `^(?:${src})$` : src, 'g');
    } catch (e) {
      throw new Error(`${field}: "${raw}" is not a valid regular expression (${(e as Error).message})`, { cause: e });
    }
    return {
      raw,
      common,
      test: (name) => {
        if (fullmatch) {
          re.lastIndex = 0;
          return re.test(name);
        }
        // OpenDelta: the match must end the name and begin at its start or right after a dot.
        re.lastIndex = 0;
        for (let m = re.exec(name); m; m = re.exec(name)) {
          if (m.index + m[0].length === name.length && (m.index === 0 || name[m.index - 1] === '.')) return true;
          if (m[0].length === 0) re.lastIndex++;
        }
        return false;
      },
    };
  }
  return { raw, common, test: (name) => name === text || name.endsWith(`.${text}`) };
}

/** Every addressable name: each module and each of its ancestors, by Hugging Face and common names. */
function addressable(model: BuiltModel): { name: string; common?: string; leaves: ModuleRecord[] }[] {
  const byName = new Map<string, { name: string; common?: string; leaves: ModuleRecord[] }>();
  const add = (name: string, common: string | undefined, leaf: ModuleRecord): void => {
    const e = byName.get(name) ?? { name, common, leaves: [] };
    e.leaves.push(leaf);
    byName.set(name, e);
  };
  for (const m of model.modules) {
    const parts = m.name.split('.');
    for (let i = 1; i <= parts.length; i++) add(parts.slice(0, i).join('.'), undefined, m);
    const c = commonName(model.modelType, m.name);
    if (c) {
      const cp = c.split('.');
      for (let i = 1; i <= cp.length; i++) add(`@${cp.slice(0, i).join('.')}`, cp.slice(0, i).join('.'), m);
    }
  }
  return [...byName.values()];
}

function levenshtein(a: string, b: string): number {
  const d = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let prev = d[0];
    d[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const t = d[j];
      d[j] = Math.min(d[j] + 1, d[j - 1] + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = t;
    }
  }
  return d[b.length];
}

function closeNames(model: BuiltModel, key: string): string[] {
  const common = key.includes('@');
  const target = common
    ? key
    : key
        .split('.')
        .pop()!
        .replace(/^\[r\]/, '');
  const pool = new Set<string>();
  for (const m of model.modules) {
    if (!common) {
      pool.add(m.name.split('.').pop()!);
      continue;
    }
    const c = commonName(model.modelType, m.name);
    if (!c) continue;
    const parts = c.split('.');
    const role = parts.length > 3 ? parts.slice(3) : parts;
    pool.add(`${role.join('@.')}@`);
  }
  return [...pool]
    .filter((n) => !/^\d+$/.test(n))
    .sort((a, b) => levenshtein(target, a) - levenshtein(target, b))
    .slice(0, 6);
}

/**
 * The modules a delta modifies, in graph order. `accepts` says which module types the method can modify (a key
 * that names a module of another type directly is an error); a key naming a container selects its Linear and
 * Conv1D modules. `defaults` are used when the config names no modules.
 */
export function selectModules(
  model: BuiltModel,
  cfg: Addressing,
  method: string,
  accepts: string[],
  defaults?: string[],
): ModuleRecord[] {
  let keys: Key[];
  if (cfg.modified_modules && cfg.target_modules)
    throw new Error(`${method}: give modified_modules (OpenDelta) or target_modules (PEFT), not both`);
  if (typeof cfg.target_modules === 'string') keys = [compile(cfg.target_modules, `${method}.target_modules`, true)];
  else {
    const list = cfg.modified_modules ?? cfg.target_modules ?? defaults;
    if (!list || list.length === 0)
      throw new Error(`${method}: no modules to modify and no default for ${model.modelType}; give modified_modules`);
    keys = list.map((k) => compile(k, `${method}.modified_modules`));
  }
  const excludes = (cfg.exclude_modules ?? []).map((k) => compile(k, `${method}.exclude_modules`));
  const entries = addressable(model);
  const picked = new Set<ModuleRecord>();
  for (const key of keys) {
    let hit = false;
    for (const e of entries) {
      if (key.common !== e.name.startsWith('@')) continue;
      if (!key.test(key.common ? e.common! : e.name)) continue;
      // The module the key names itself, when it is one (a leaf, or a container such as an attention block).
      const own = e.leaves.find((m) =>
        key.common ? commonName(model.modelType, m.name) === e.common : m.name === e.name,
      );
      if (own && accepts.includes(own.type)) picked.add(own);
      else if (own && !CONTAINERS.includes(own.type)) {
        throw new Error(
          `${method}: "${key.raw}" selects ${own.name}, a ${own.type}; ${method} modifies ${accepts.join(', ')} modules`,
        );
      } else {
        for (const m of e.leaves)
          if ((m.type === 'Linear' || m.type === 'Conv1D') && accepts.includes(m.type) && m.name !== 'lm_head')
            picked.add(m);
      }
      hit = true;
    }
    if (!hit)
      throw new Error(
        `${method}: "${key.raw}" matches no module of this ${model.architecture}; close names: ${closeNames(model, key.raw).join(', ')}`,
      );
  }
  const excluded = (m: ModuleRecord): boolean => {
    const c = commonName(model.modelType, m.name);
    const parts = m.name.split('.');
    const cparts = c?.split('.') ?? [];
    return excludes.some((k) =>
      k.common
        ? cparts.some((_, i) => k.test(cparts.slice(0, i + 1).join('.')))
        : parts.some((_, i) => k.test(parts.slice(0, i + 1).join('.'))),
    );
  };
  const out = model.modules.filter((m) => picked.has(m) && !excluded(m));
  if (out.length === 0)
    throw new Error(
      `${method}: every selected module is excluded by exclude_modules ${JSON.stringify(cfg.exclude_modules)}`,
    );
  return out;
}
