// `delta-studio workspace|runs|plugins|export|import-peft`: the workspace, its runs and its plugin library from the
// command line. Every command prints a readable table, or with --json one JSON object as the last line.
import { resolve } from 'node:path';
import { checkWorkspace } from '../store/check.js';
import { Workspace, RUN_STATUSES, type RunStatus } from '../store/workspace.js';
import { EXPORT_FORMATS, exportPlugin, type ExportFormat } from '../export/index.js';
import { importPeft } from '../export/peft.js';
import type { Task } from '../models/types.js';

type Values = Record<string, string | boolean | undefined>;

export function workspaceDir(v: Values): string {
  return resolve(
    typeof v.workspace === 'string' ? v.workspace : (process.env.DELTA_STUDIO_WORKSPACE ?? 'delta-studio-workspace'),
  );
}

function out(v: Values, obj: unknown, text: () => string): number {
  process.stdout.write(v.json ? `${JSON.stringify(obj)}\n` : `${text()}\n`);
  return 0;
}

function table(rows: string[][]): string {
  const w = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  return rows
    .map((r) =>
      r
        .map((c, i) => c.padEnd(w[i]))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

const fmt = (x: number | null | undefined, digits = 4): string =>
  x === null || x === undefined ? '—' : Number.isInteger(x) ? String(x) : x.toFixed(digits);

function withWorkspace<T>(v: Values, fn: (ws: Workspace) => T, create = false): T {
  const ws = create ? Workspace.init(workspaceDir(v)) : Workspace.open(workspaceDir(v));
  try {
    return fn(ws);
  } finally {
    ws.close();
  }
}

export function workspaceCommand(pos: string[], v: Values): number {
  const [sub, dir] = pos;
  if (sub === 'init') {
    const ws = Workspace.init(dir ?? workspaceDir(v));
    const info = {
      workspace: ws.dir,
      schema_version: ws.schemaVersion,
      migrated_from: ws.migratedFrom ?? null,
      interrupted_runs: ws.recovered,
    };
    ws.close();
    return out(
      v,
      info,
      () =>
        `workspace ${info.workspace} (schema ${info.schema_version})${info.migrated_from ? `, migrated from schema ${info.migrated_from}` : ''}${info.interrupted_runs.length ? `\ninterrupted runs (resume with delta-studio resume <id>): ${info.interrupted_runs.join(', ')}` : ''}`,
    );
  }
  if (sub === 'check') {
    const r = checkWorkspace(dir ?? workspaceDir(v), { repair: v.repair === true });
    out(v, r, () =>
      [
        `workspace ${r.workspace} (schema ${r.schemaVersion}): ${r.ok ? 'consistent' : 'PROBLEMS FOUND'}`,
        `checked ${r.checked.plugins} plugin files (${r.checked.bytesHashed.toLocaleString('en-US')} bytes hashed), ${r.checked.datasets} datasets, ${r.checked.runs} runs, ${r.checked.models} copied models`,
        ...r.problems.map(
          (p) =>
            `  ${p.severity === 'error' ? 'ERROR  ' : 'warning'} ${p.path ? `${p.path}: ` : ''}${p.message}${p.repaired ? ` — ${p.repaired}` : ''}`,
        ),
        ...(!v.repair && r.problems.some((p) => p.kind === 'orphan' || p.kind === 'temp')
          ? ['run with --repair to delete temp files and move orphans to lost+found/']
          : []),
      ].join('\n'),
    );
    return r.ok ? 0 : 1;
  }
  throw new Error(
    `workspace needs a subcommand: init [DIR] or check [DIR] [--repair] (got ${sub ? `"${sub}"` : 'none'})`,
  );
}

export function runsCommand(pos: string[], v: Values): number {
  const [sub, ...ids] = pos;
  return withWorkspace(v, (ws) => {
    if (sub === 'list' || sub === undefined) {
      if (typeof v.status === 'string' && !RUN_STATUSES.includes(v.status as RunStatus))
        throw new Error(`--status must be one of ${RUN_STATUSES.join(', ')}, got "${v.status}"`);
      const runs = ws.listRuns({ status: v.status as RunStatus | undefined });
      const rows = runs.map((r) => ({
        id: r.id,
        name: r.name,
        status: r.status,
        method: r.method,
        steps: r.steps,
        total_steps: r.total_steps,
        device: r.device,
        created_at: r.created_at,
        trainable_params: r.trainable_params,
        metrics: r.metrics,
        reason: r.reason,
      }));
      return out(v, { workspace: ws.dir, runs: rows }, () =>
        runs.length
          ? table([
              ['run', 'status', 'method', 'steps', 'trainable', 'eval metrics'],
              ...runs.map((r) => [
                r.id,
                r.status,
                r.method,
                `${r.steps}/${r.total_steps ?? '?'}`,
                fmt(r.trainable_params),
                Object.entries(r.metrics)
                  .filter(([k]) => k.startsWith('eval/'))
                  .map(([k, x]) => `${k.slice(5)} ${fmt(x)}`)
                  .join(', '),
              ]),
            ])
          : `no runs in ${ws.dir}`,
      );
    }
    if (sub === 'show') {
      if (!ids[0]) throw new Error('runs show needs a run id (see delta-studio runs list)');
      const r = ws.getRun(ids[0]);
      const series = Object.fromEntries(ws.metricKeys(r.id).map((k) => [k, ws.metricSeries(r.id, k)]));
      const info = { ...r, config: JSON.parse(r.config) as unknown, metrics: ws.latestMetrics(r.id), series };
      return out(v, info, () =>
        [
          `run ${r.id}${r.name ? ` (${r.name})` : ''}: ${r.status}${r.reason ? ` — ${r.reason}` : ''}`,
          `method ${r.method}; ${fmt(r.trainable_params)} trainable of ${fmt(r.total_params)}; device ${r.device ?? '—'}; steps ${r.steps}/${r.total_steps ?? '?'}; ${r.train_seconds ? `${r.train_seconds.toFixed(1)} s` : ''}`,
          `created ${r.created_at}${r.finished_at ? `, finished ${r.finished_at}` : ''}; folder ${ws.path(r.dir)}`,
          ...Object.entries(info.metrics).map(([k, x]) => `  ${k.padEnd(24)} ${fmt(x)} (${series[k].length} points)`),
          `config ${r.config}`,
        ].join('\n'),
      );
    }
    if (sub === 'compare') {
      if (ids.length < 1) throw new Error('runs compare needs run ids: delta-studio runs compare <id> <id> …');
      const runs = ids.map((id) => ws.getRun(id));
      const rows = runs.map((r) => {
        const m = ws.latestMetrics(r.id);
        const pct = r.trainable_params && r.total_params ? (100 * r.trainable_params) / r.total_params : null;
        return {
          id: r.id,
          method: r.method,
          status: r.status,
          trainable_params: r.trainable_params,
          trainable_percent: pct,
          steps: r.steps,
          train_seconds: r.train_seconds,
          tokens_per_sec: r.tokens_per_sec,
          metrics: Object.fromEntries(
            Object.entries(m)
              .filter(([k]) => k.startsWith('eval/'))
              .map(([k, x]) => [k.slice(5), x]),
          ),
        };
      });
      const keys = [...new Set(rows.flatMap((r) => Object.keys(r.metrics)))].sort();
      return out(v, { runs: rows }, () =>
        table([
          ['run', 'method', 'status', 'trainable', '%', 'seconds', ...keys],
          ...rows.map((r) => [
            r.id,
            r.method,
            r.status,
            fmt(r.trainable_params),
            fmt(r.trainable_percent, 3),
            fmt(r.train_seconds, 1),
            ...keys.map((k) => fmt(r.metrics[k])),
          ]),
        ]),
      );
    }
    throw new Error(`runs: unknown subcommand "${sub}" (list, show, compare)`);
  });
}

export function pluginsCommand(pos: string[], v: Values): number {
  const [sub, ref, ...rest] = pos;
  return withWorkspace(
    v,
    (ws) => {
      switch (sub ?? 'list') {
        case 'list': {
          const ps = ws.listPlugins();
          return out(v, { workspace: ws.dir, plugins: ps }, () =>
            ps.length
              ? table([
                  ['plugin', 'versions', 'method', 'task', 'aliases'],
                  ...ps.map((p) => [
                    p.name,
                    String(p.versions),
                    p.method,
                    p.task,
                    Object.entries(p.aliases)
                      .map(([a, n]) => `${a}→v${n}`)
                      .join(' '),
                  ]),
                ])
              : `no plugins in ${ws.dir}`,
          );
        }
        case 'show': {
          if (!ref) throw new Error('plugins show needs a plugin name');
          const name = ref.split('@')[0];
          const p = ws.showPlugin(name);
          const versions = p.versions.map((x) => ({
            ...x,
            methods: JSON.parse(x.methods) as unknown,
            labels: x.labels ? (JSON.parse(x.labels) as unknown) : null,
            metrics: JSON.parse(x.metrics) as Record<string, number>,
            file: ws.path(x.file),
          }));
          const lineage = p.versions.length
            ? ws.lineage(`${name}@${p.versions[p.versions.length - 1].version}`)
            : undefined;
          return out(v, { ...p, versions, lineage }, () =>
            [
              `plugin ${p.name}${p.description ? ` — ${p.description}` : ''}; aliases: ${Object.entries(p.aliases)
                .map(([a, n]) => `${a}→v${n}`)
                .join(', ')}`,
              table([
                ['version', 'method', 'task', 'trainable', 'size', 'sha256', 'metrics', 'tags', 'run'],
                ...versions.map((x) => [
                  `v${x.version}`,
                  x.method,
                  x.task,
                  fmt(x.trainable_params),
                  fmt(x.size),
                  x.sha256.slice(0, 12),
                  Object.entries(x.metrics)
                    .map(([k, m]) => `${k} ${fmt(m)}`)
                    .join(', '),
                  x.tags.join(','),
                  x.run_id ?? x.source,
                ]),
              ]),
              ...versions.flatMap((x) => [
                ...(x.notes ? [`  v${x.version} notes: ${x.notes}`] : []),
                ...x.exports.map((e) => `  v${x.version} exported as ${e.format} to ${e.path}`),
              ]),
            ].join('\n'),
          );
        }
        case 'tag': {
          if (!ref || (!rest.length && typeof v.remove !== 'string'))
            throw new Error(
              'plugins tag needs a plugin and tags: delta-studio plugins tag <name[@version]> <tag>… [--remove TAG]',
            );
          const tags = ws.tag(ref, rest, typeof v.remove === 'string' ? [v.remove] : []);
          return out(v, { plugin: ref, tags }, () => `${ref}: tags ${tags.join(', ') || '(none)'}`);
        }
        case 'alias': {
          const [alias] = rest;
          if (!ref || !alias)
            throw new Error(
              'plugins alias needs a version and an alias: delta-studio plugins alias <name@version> <alias> [--delete]',
            );
          if (v.delete === true) {
            ws.removeAlias(ref.split('@')[0], alias);
            return out(v, { plugin: ref.split('@')[0], alias, removed: true }, () => `removed alias ${alias}`);
          }
          const x = ws.setAlias(ref, alias);
          return out(v, { plugin: x.plugin, alias, version: x.version }, () => `${x.plugin}@${alias} → v${x.version}`);
        }
        case 'notes': {
          if (!ref || !rest.length)
            throw new Error(
              'plugins notes needs a version and the text: delta-studio plugins notes <name@version> "text"',
            );
          ws.setNotes(ref, rest.join(' '));
          return out(v, { plugin: ref, notes: rest.join(' ') }, () => `notes saved on ${ref}`);
        }
        case 'import': {
          if (!ref) throw new Error('plugins import needs a .delta file');
          const x = ws.importPluginFile(ref, { name: typeof v.name === 'string' ? v.name : undefined });
          return out(
            v,
            { plugin: x.plugin, version: x.version, file: ws.path(x.file), sha256: x.sha256 },
            () => `imported as ${x.plugin} v${x.version}`,
          );
        }
        default:
          throw new Error(`plugins: unknown subcommand "${sub}" (list, show, tag, alias, notes, import)`);
      }
    },
    sub === 'import',
  ); // importing into a workspace that does not exist yet creates it
}

export function exportCommand(pos: string[], v: Values): number {
  const [ref] = pos;
  if (!ref)
    throw new Error(
      'export needs a plugin: delta-studio export <name[@version]> --format peft|merged|onnx|bundle [--out DIR]',
    );
  const format = v.format as ExportFormat;
  if (!EXPORT_FORMATS.includes(format))
    throw new Error(
      `--format must be one of ${EXPORT_FORMATS.join(', ')}, got ${format === undefined ? 'nothing' : `"${format}"`}`,
    );
  if (v.mode !== undefined && v.mode !== 'baked' && v.mode !== 'inputs')
    throw new Error(`--mode must be baked or inputs, got "${v.mode}"`);
  if (v.dtype !== undefined && v.dtype !== 'float32' && v.dtype !== 'source')
    throw new Error(`--dtype must be float32 or source, got "${v.dtype}"`);
  return withWorkspace(v, (ws) => {
    const r = exportPlugin(ws, {
      plugin: ref,
      format,
      folder: typeof v.out === 'string' ? v.out : undefined,
      name: typeof v.name === 'string' ? v.name : undefined,
      model: typeof v.model === 'string' ? v.model : undefined,
      onnxMode: v.mode as 'baked' | 'inputs' | undefined,
      dtype: v.dtype as 'float32' | 'source' | undefined,
      overwrite: v.overwrite === true,
      force: v.force === true,
    });
    return out(
      v,
      r,
      () =>
        `exported ${ref} as ${format}: ${r.path} (${r.bytes.toLocaleString('en-US')} bytes)\n${r.files.map((f) => `  ${f}`).join('\n')}`,
    );
  });
}

export function importPeftCommand(pos: string[], v: Values): number {
  const [dir] = pos;
  if (!dir)
    throw new Error(
      'import-peft needs the PEFT adapter folder: delta-studio import-peft <dir> --model <base model dir> [--name NAME]',
    );
  if (typeof v.model !== 'string')
    throw new Error('import-peft needs --model <base model folder> (the one the adapter was trained on)');
  const model = v.model;
  return withWorkspace(
    v,
    (ws) => {
      const labels = typeof v.labels === 'string' ? v.labels.split(',').map((s) => s.trim()) : undefined;
      const { meta, tensors } = importPeft(dir, model, { labels, task: v.task as Task | undefined });
      const m = ws.addModel(model);
      const name =
        typeof v.name === 'string'
          ? v.name
          : `${m.name}-${meta.methods.map((x) => x.method).join('+')}-peft`.replace(/[^\p{L}\p{N}._-]+/gu, '-');
      const x = ws.registerPlugin({
        name,
        tensors,
        meta: { ...meta, base: { ...meta.base, name: m.name } },
        modelId: m.id,
        source: `peft:${resolve(dir)}`,
      });
      return out(
        v,
        {
          plugin: x.plugin,
          version: x.version,
          method: x.method,
          task: x.task,
          trainable_params: x.trainable_params,
          file: ws.path(x.file),
        },
        () =>
          `imported ${dir} as plugin ${x.plugin} v${x.version} (${x.method}, ${x.task}, ${x.trainable_params.toLocaleString('en-US')} parameters)`,
      );
    },
    true,
  );
}
