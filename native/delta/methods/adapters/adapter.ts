// Adapter (Houlsby et al. 2019), sequential: a part's output h becomes h + up(act(down(h))).
import { ADDRESSING_KEYS, registerMethod } from '../../registry.js';
import { activate, bottleneckKeys, checkWidth, dense, parts, unmergeable } from './common.js';

registerMethod({
  name: 'adapter',
  kind: 'addition',
  title: 'Adapter (Houlsby, sequential)',
  keys: { ...bottleneckKeys, ...ADDRESSING_KEYS },
  cannotMerge: unmergeable('inserts bottleneck adapter layers'),
  apply(ctx, cfg) {
    const width = cfg.bottleneck_dim as number,
      act = cfg.non_linearity as string;
    for (const m of parts(ctx, cfg, 'adapter')) {
      checkWidth('adapter', m, width);
      ctx.mapOutput(m, (h) =>
        ctx.g.scope(`${m.name}.adapter`, () => {
          const down = dense(ctx, `${m.name}.adapter.down_proj`, h, m.out!, width);
          return ctx.g.op1('Add', [
            h,
            dense(ctx, `${m.name}.adapter.up_proj`, activate(ctx.g, down, act), width, m.out!),
          ]);
        }),
      );
      ctx.mark(m);
    }
  },
});
