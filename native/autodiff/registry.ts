// The table of gradient rules: one entry per op. An op on a gradient path without an entry is an error naming it.
import type { Attr, Graph, Node, Value } from '../onnx/graph.js';
import type { Widen } from '../onnx/ops.js';

export interface GradContext {
  g: Graph;
  node: Node;
  /** Forward input i. */
  x(i: number): Value;
  /** Whether input i is present. */
  has(i: number): boolean;
  /** Forward output i (added to the forward node when the rule needs a saved statistic it did not output yet). */
  y(i: number): Value;
  /** Gradient of the loss w.r.t. output i, or undefined when that output does not reach the loss. */
  dy: (Value | undefined)[];
  /** Which inputs need a gradient (frozen ones get no gradient work at all). */
  needs: boolean[];
  attr<T extends Attr>(name: string, dflt: T): Widen<T>;
}

/** Returns the gradient of each input (undefined where not needed or not differentiable). */
export type GradRule = (c: GradContext) => (Value | undefined)[];

export const RULES = new Map<string, GradRule>();

export function ruleKey(domain: string, op: string): string {
  return domain && domain !== 'ai.onnx' ? `${domain}.${op}` : op;
}

export function defineRule(op: string, rule: GradRule, domain = ''): void {
  const k = ruleKey(domain, op);
  if (RULES.has(k)) throw new Error(`gradient rule for ${k} is defined twice`);
  RULES.set(k, rule);
}
