// The plugin library: versions with their aliases, tags, notes, exports and lineage; importing PEFT adapters.
import { existsSync } from 'node:fs';
import { basename, resolve } from 'node:path';
import {
  notFound,
  type PluginDetail,
  type PluginSummary,
  type PluginVersion,
  type TaskName,
} from '../contract/index.js';
import { importPeft } from '../export/peft.js';
import { safeName } from '../files/paths.js';
import type { Workspace } from '../store/workspace.js';
import { PLUGIN_EXTENSION, readPlugin } from '../plugins/format.js';
import { toPluginVersion } from './dto.js';
import { checkPluginLineage } from './runs.js';
import { headTask, taskName } from './tasks.js';

export class Plugins {
  constructor(
    private readonly need: () => Workspace,
    /** The desktop shell's "show in folder"; elsewhere there is no file manager to show it in. */
    private readonly showInFolder?: (path: string) => void,
  ) {}

  list(): PluginSummary[] {
    return this.need()
      .listPlugins()
      .map((p) => ({ ...p, task: p.task ? taskName(p.task) : 'classification' }));
  }

  get(name: string): PluginDetail {
    const ws = this.need();
    const shown = ws.showPlugin(name);
    const lineage = shown.versions.map((v) => {
      const l = ws.lineage(`${shown.name}@${v.version}`);
      return {
        version: v.version,
        model: l.model ? { id: l.model.id, name: l.model.name, path: l.model.path } : null,
        dataset: l.dataset ? { id: l.dataset.id, dataset: l.dataset.dataset, digest: l.dataset.digest } : null,
        run: l.run ? { id: l.run.id, status: l.run.status, method: l.run.method } : null,
      };
    });
    return {
      name: shown.name,
      description: shown.description,
      aliases: shown.aliases,
      versions: shown.versions.map((v) => ({
        ...toPluginVersion(v, ws.path(v.file)),
        tags: v.tags,
        exports: v.exports.map((e) => ({
          format: e.format as PluginDetail['versions'][number]['exports'][number]['format'],
          path: e.path,
          createdAt: e.created_at,
        })),
      })),
      lineage,
    };
  }

  tag(ref: string, add: string[], remove: string[]): { ref: string; tags: string[] } {
    return { ref, tags: this.need().tag(ref, add, remove) };
  }

  alias(ref: string, alias: string, remove: boolean): { plugin: string; alias: string; version: number | null } {
    const ws = this.need();
    if (remove) {
      const name = ref.split('@')[0];
      ws.removeAlias(name, alias);
      return { plugin: name, alias, version: null };
    }
    const row = ws.setAlias(ref, alias);
    return { plugin: row.plugin, alias, version: row.version };
  }

  notes(ref: string, notes: string): { ref: string; notes: string } {
    this.need().setNotes(ref, notes);
    return { ref, notes };
  }

  /** A PEFT adapter folder as a new plugin version on a recorded model. */
  importPeft(p: { path: string; modelId: number; name?: string; task?: TaskName; labels?: string[] }): PluginVersion {
    const ws = this.need();
    const m = ws.getModel(p.modelId);
    const dir = resolve(p.path);
    const { meta, tensors } = importPeft(dir, ws.modelPath(m), {
      labels: p.labels,
      task: p.task && headTask(p.task),
    });
    const name = p.name ?? safeName(`${m.name}-${meta.methods.map((x) => x.method).join('+')}-peft`);
    checkPluginLineage(ws, name, meta.task, meta.base.fingerprint, m.name);
    const row = ws.registerPlugin({
      name,
      tensors,
      meta: { ...meta, base: { ...meta.base, name: m.name } },
      modelId: m.id,
      source: `peft:${dir}`,
    });
    return toPluginVersion(row, ws.path(row.file));
  }

  /** A .delta file made elsewhere as a new plugin version. */
  importFile(file: string, opts: { name?: string } = {}): PluginVersion {
    const ws = this.need();
    const plugin = readPlugin(resolve(file));
    const name = opts.name ?? plugin.meta.plugin ?? safeName(basename(file, PLUGIN_EXTENSION));
    checkPluginLineage(ws, name, plugin.meta.task, plugin.meta.base.fingerprint, plugin.meta.base.name ?? file);
    const row = ws.importPluginFile(resolve(file), { ...opts, name });
    return toPluginVersion(row, ws.path(row.file));
  }

  reveal(path: string): { path: string; shown: boolean } {
    const abs = resolve(path);
    if (!existsSync(abs)) throw notFound(`${abs} does not exist (was it moved or deleted?)`);
    if (!this.showInFolder) return { path: abs, shown: false };
    this.showInFolder(abs);
    return { path: abs, shown: true };
  }
}
