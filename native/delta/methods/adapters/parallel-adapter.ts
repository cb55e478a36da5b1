// Parallel adapter (He et al. 2022): a bottleneck from a part's input, added to its output: y + scale·up(act(down(x))).
import { ADDRESSING_KEYS, registerMethod } from '../../registry.js';
import { activate, bottleneckKeys, checkWidth, dense, parts, unmergeable } from './common.js';

registerMethod({
  name: 'parallel_adapter',
  kind: 'addition',
  title: 'Parallel adapter',
  keys: {
    ...bottleneckKeys,
    scaled: { type: 'number', default: 1, doc: 'scale of the adapter branch' },
    ...ADDRESSING_KEYS,
  },
  cannotMerge: unmergeable('adds parallel bottleneck adapter layers'),
  apply(ctx, cfg) {
    const width = cfg.bottleneck_dim as number,
      act = cfg.non_linearity as string,
      scale = cfg.scaled as number;
    for (const m of parts(ctx, cfg, 'parallel_adapter')) {
      checkWidth('parallel_adapter', m, width);
      const x = ctx.g.value(m.input!);
      ctx.mapOutput(m, (y) =>
        ctx.g.scope(`${m.name}.parallel_adapter`, () => {
          const down = dense(ctx, `${m.name}.parallel_adapter.down_proj`, x, m.in!, width);
          let up = dense(ctx, `${m.name}.parallel_adapter.up_proj`, activate(ctx.g, down, act), width, m.out!);
          if (scale !== 1) up = ctx.g.op1('Mul', [up, ctx.g.constant(scale, 'float32', [])]);
          return ctx.g.op1('Add', [y, up]);
        }),
      );
      ctx.mark(m);
    }
  },
});
