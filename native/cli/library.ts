// `delta-studio workspace|runs|plugins|export|import-peft`: the workspace, its runs and its plugin library from the
// command line, through the application. Every command prints a readable table, or with --json the contract's data
// as one JSON object on the last line.
import {
  EXPORT_FORMATS,
  RUN_STATUSES,
  TASKS,
  type ExportFormat,
  type RunStatus,
  type TaskName,
} from '../contract/index.js';
import { existsSync, rmSync } from 'node:fs';
import { Application } from '../app/index.js';
import { Workspace } from '../store/workspace.js';
import { oneOf } from './flags.js';
import { fmt, out, table, type Values } from './output.js';
import { workspaceDir } from './workspace-dir.js';

/** Runs `fn` with the application open on the command's workspace (created first when `create`). */
export async function withApp<T>(v: Values, fn: (app: Application) => T | Promise<T>, create = false): Promise<T> {
  const dir = workspaceDir(v);
  // A workspace this command makes for work that then fails holds nothing worth keeping.
  const made = create && !existsSync(dir);
  const app = new Application();
  let ok = false;
  try {
    await app.open(dir, create);
    const r = await fn(app);
    ok = true;
    return r;
  } finally {
    await app.close();
    if (made && !ok) rmSync(dir, { recursive: true, force: true });
  }
}

export async function workspaceCommand(pos: string[], v: Values): Promise<number> {
  const [sub, dir] = pos;
  if (sub === 'init') {
    const ws = Workspace.init(dir ?? workspaceDir(v));
    const info = {
      workspace: ws.dir,
      schemaVersion: ws.schemaVersion,
      migratedFrom: ws.migratedFrom ?? null,
      interruptedRuns: ws.recovered,
    };
    ws.close();
    return out(
      v,
      info,
      () =>
        `workspace ${info.workspace} (schema ${info.schemaVersion})${info.migratedFrom ? `, migrated from schema ${info.migratedFrom}` : ''}${info.interruptedRuns.length ? `\ninterrupted runs (resume with delta-studio resume <id>): ${info.interruptedRuns.join(', ')}` : ''}`,
    );
  }
  if (sub === 'check') {
    const r = new Application().check(dir ?? workspaceDir(v), v.repair === true);
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

export function runsCommand(pos: string[], v: Values): Promise<number> {
  const [sub, ...ids] = pos;
  return withApp(v, (app) => {
    const dir = app.workspaceOrFail().dir;
    if (sub === 'list' || sub === undefined) {
      if (typeof v.status === 'string' && !RUN_STATUSES.includes(v.status as RunStatus))
        throw new Error(`--status must be one of ${RUN_STATUSES.join(', ')}, got "${v.status}"`);
      const runs = app.runs.list(v.status as RunStatus | undefined);
      return out(v, { workspace: dir, runs }, () =>
        runs.length
          ? table([
              ['run', 'status', 'method', 'steps', 'trainable', 'eval metrics'],
              ...runs.map((r) => [
                r.id,
                r.status,
                r.method,
                `${r.steps}/${r.totalSteps ?? '?'}`,
                fmt(r.trainableParams),
                Object.entries(r.metrics)
                  .filter(([k]) => k.startsWith('eval/'))
                  .map(([k, x]) => `${k.slice(5)} ${fmt(x)}`)
                  .join(', '),
              ]),
            ])
          : `no runs in ${dir}`,
      );
    }
    if (sub === 'show') {
      if (!ids[0]) throw new Error('runs show needs a run id (see delta-studio runs list)');
      const d = app.runs.get(ids[0]);
      const { series } = app.runs.metrics(d.run.id);
      const r = d.run;
      return out(v, { ...d, series }, () =>
        [
          `run ${r.id}${r.name ? ` (${r.name})` : ''}: ${r.status}${r.reason ? ` — ${r.reason}` : ''}`,
          `method ${r.method}; ${fmt(r.trainableParams)} trainable of ${fmt(r.totalParams)}; device ${r.device ?? '—'}; steps ${r.steps}/${r.totalSteps ?? '?'}; ${r.trainSeconds ? `${r.trainSeconds.toFixed(1)} s` : ''}`,
          `created ${r.createdAt}${r.finishedAt ? `, finished ${r.finishedAt}` : ''}; folder ${app.workspaceOrFail().path(r.dir)}`,
          ...Object.entries(d.latest).map(([k, x]) => `  ${k.padEnd(24)} ${fmt(x)} (${series[k].length} points)`),
          `config ${JSON.stringify(d.config)}`,
        ].join('\n'),
      );
    }
    if (sub === 'compare') {
      if (ids.length < 1) throw new Error('runs compare needs run ids: delta-studio runs compare <id> <id> …');
      const { runs, metricKeys } = app.runs.compare(ids);
      return out(v, { runs, metricKeys }, () =>
        table([
          ['run', 'method', 'status', 'trainable', '%', 'seconds', ...metricKeys],
          ...runs.map((r) => [
            r.id,
            r.method,
            r.status,
            fmt(r.trainableParams),
            fmt(r.trainablePercent, 3),
            fmt(r.trainSeconds, 1),
            ...metricKeys.map((k) => fmt(r.metrics[k])),
          ]),
        ]),
      );
    }
    throw new Error(`runs: unknown subcommand "${sub}" (list, show, compare)`);
  });
}

export function pluginsCommand(pos: string[], v: Values): Promise<number> {
  const [sub, ref, ...rest] = pos;
  // Importing into a workspace that does not exist yet creates it.
  return withApp(
    v,
    (app) => {
      const dir = app.workspaceOrFail().dir;
      switch (sub ?? 'list') {
        case 'list': {
          const ps = app.plugins.list();
          return out(v, { workspace: dir, plugins: ps }, () =>
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
              : `no plugins in ${dir}`,
          );
        }
        case 'show': {
          if (!ref) throw new Error('plugins show needs a plugin name');
          const p = app.plugins.get(ref.split('@')[0]);
          return out(v, p, () =>
            [
              `plugin ${p.name}${p.description ? ` — ${p.description}` : ''}; aliases: ${Object.entries(p.aliases)
                .map(([a, n]) => `${a}→v${n}`)
                .join(', ')}`,
              table([
                ['version', 'method', 'task', 'trainable', 'size', 'sha256', 'metrics', 'tags', 'run'],
                ...p.versions.map((x) => [
                  `v${x.version}`,
                  x.method,
                  x.task,
                  fmt(x.trainableParams),
                  fmt(x.size),
                  x.sha256.slice(0, 12),
                  Object.entries(x.metrics)
                    .map(([k, m]) => `${k} ${fmt(m)}`)
                    .join(', '),
                  x.tags.join(','),
                  x.runId ?? x.source,
                ]),
              ]),
              ...p.versions.flatMap((x) => [
                ...(x.notes ? [`  v${x.version} notes: ${x.notes}`] : []),
                ...x.exports.map((e) => `  v${x.version} exported as ${e.format} to ${e.path}`),
              ]),
            ].join('\n'),
          );
        }
        case 'tag': {
          if (!ref || (!rest.length && typeof v.remove !== 'string'))
            throw new Error('plugins tag needs a version and tags: delta-studio plugins tag <name[@version]> <tag>…');
          const r = app.plugins.tag(ref, rest, typeof v.remove === 'string' ? [v.remove] : []);
          return out(v, r, () => `${ref}: tags ${r.tags.join(', ') || '(none)'}`);
        }
        case 'alias': {
          const [alias] = rest;
          if (!ref || !alias)
            throw new Error(
              'plugins alias needs a version and an alias: delta-studio plugins alias <name@version> <alias> [--delete]',
            );
          const r = app.plugins.alias(ref, alias, v.delete === true);
          return out(v, r, () =>
            r.version === null ? `removed alias ${alias}` : `${r.plugin}@${alias} → v${r.version}`,
          );
        }
        case 'notes': {
          if (!ref || !rest.length)
            throw new Error(
              'plugins notes needs a version and the text: delta-studio plugins notes <name@version> "text"',
            );
          const r = app.plugins.notes(ref, rest.join(' '));
          return out(v, r, () => `notes saved on ${ref}`);
        }
        case 'import': {
          if (!ref) throw new Error('plugins import needs a .delta file');
          const x = app.plugins.importFile(ref, { name: typeof v.name === 'string' ? v.name : undefined });
          return out(v, x, () => `imported as ${x.plugin} v${x.version}`);
        }
        default:
          throw new Error(`plugins: unknown subcommand "${sub}" (list, show, tag, alias, notes, import)`);
      }
    },
    sub === 'import',
  );
}

export function exportCommand(pos: string[], v: Values): Promise<number> {
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
  return withApp(v, async (app) => {
    const choice = {
      ref,
      format,
      folder: typeof v.out === 'string' ? v.out : undefined,
      name: typeof v.name === 'string' ? v.name : undefined,
      model: typeof v.model === 'string' ? v.model : undefined,
      onnxMode: v.mode as 'baked' | 'inputs' | undefined,
      dtype: v.dtype as 'float32' | 'source' | undefined,
      overwrite: v.overwrite === true,
      force: v.force === true,
    };
    app.exports.check(choice);
    const r = await app.exports.run(choice);
    return out(
      v,
      r,
      () =>
        `exported ${ref} as ${format}: ${r.path} (${r.bytes.toLocaleString('en-US')} bytes)\n${r.files.map((f) => `  ${f}`).join('\n')}`,
    );
  });
}

export function importPeftCommand(pos: string[], v: Values): Promise<number> {
  const [dir] = pos;
  if (!dir)
    throw new Error(
      'import-peft needs the PEFT adapter folder: delta-studio import-peft <dir> --model <base model dir> [--name NAME]',
    );
  if (typeof v.model !== 'string')
    throw new Error('import-peft needs --model <base model folder> (the one the adapter was trained on)');
  if (v.task !== undefined && !TASKS.includes(v.task as TaskName))
    throw new Error(`--task must be ${oneOf(TASKS)}, got "${String(v.task)}"`);
  const model = v.model;
  return withApp(
    v,
    (app) => {
      const labels = typeof v.labels === 'string' ? v.labels.split(',').map((s) => s.trim()) : undefined;
      const m = app.models.import({ path: model });
      const x = app.plugins.importPeft({
        path: dir,
        modelId: m.id,
        name: typeof v.name === 'string' ? v.name : undefined,
        task: v.task as TaskName | undefined,
        labels,
      });
      return out(
        v,
        x,
        () =>
          `imported ${dir} as plugin ${x.plugin} v${x.version} (${x.method}, ${x.task}, ${x.trainableParams.toLocaleString('en-US')} parameters)`,
      );
    },
    true,
  );
}
