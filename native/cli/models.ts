// `delta-studio models pull|list`: a model by name from the Hugging Face Hub into its cache and the workspace, with a
// progress bar on a terminal (a line per file otherwise); the models of the workspace.
import { validateCall, type HubPullProgress } from '../contract/index.js';
import { formatBytes } from '../files/disk.js';
import { withApp } from './library.js';
import { fmt, out, table, type Values } from './output.js';

/** "org/name@revision" → its parts (a Hub name never holds "@"). */
export function parseModelRef(ref: string): { repo: string; revision: string } {
  const at = ref.indexOf('@');
  return at < 0 ? { repo: ref, revision: 'main' } : { repo: ref.slice(0, at), revision: ref.slice(at + 1) };
}

/** Prints a pull's progress: a redrawn bar on a terminal, else one line as each file ends. */
function pullPrinter(json: boolean): { update: (p: HubPullProgress) => void; end: () => void } {
  const tty = process.stderr.isTTY && !json;
  const to = json ? process.stderr : process.stdout;
  const said = new Set<string>();
  let announced = false;
  let drawn = false;
  return {
    update(p) {
      if (!announced && p.files.length) {
        announced = true;
        to.write(
          `${p.repo}@${p.revision} is commit ${p.commit?.slice(0, 10)}: ${p.files.length} files, ${formatBytes(p.total)}\n`,
        );
      }
      if (tty) {
        const now = p.files.find((f) => f.state === 'downloading' || f.state === 'checking');
        const pct = p.total ? p.bytes / p.total : 0;
        const bar = '█'.repeat(Math.round(pct * 24)).padEnd(24, '·');
        const file = now ? ` ${now.path} ${formatBytes(now.bytes)}/${formatBytes(now.size)}` : '';
        process.stderr.write(
          `\r\x1b[K${bar} ${Math.floor(pct * 100)}% ${formatBytes(p.bytes)}/${formatBytes(p.total)}${file}`,
        );
        drawn = true;
        return;
      }
      for (const f of p.files)
        if ((f.state === 'done' || f.state === 'cached') && !said.has(f.path)) {
          said.add(f.path);
          to.write(
            `  ${f.path}  ${formatBytes(f.size)}  ${f.state === 'cached' ? 'already in the cache' : 'checked'}\n`,
          );
        }
    },
    end() {
      if (drawn) process.stderr.write('\n');
    },
  };
}

export async function modelsCommand(pos: string[], v: Values): Promise<number> {
  const [sub, ref, ...extra] = pos;
  if (sub === 'pull') {
    if (!ref || extra.length)
      throw new Error('models pull takes one model name: delta-studio models pull org/name[@revision]');
    // The contract checks the name, the revision and the token's form, as the app's form does (never echoing it).
    const { params } = validateCall<'models.pull'>('models.pull', {
      ...parseModelRef(ref),
      ...(typeof v.token === 'string' ? { token: v.token } : {}),
      ...(typeof v.name === 'string' ? { name: v.name } : {}),
    });
    const json = v.json === true;
    return withApp(
      v,
      async (app) => {
        const printer = pullPrinter(json);
        const r = await app.models.pull(params, printer.update).finally(printer.end);
        const dir = app.workspaceOrFail().dir;
        return out(v, { workspace: dir, ...r }, () =>
          [
            `${r.repo}@${r.revision} (commit ${r.commit.slice(0, 10)}): ${r.files.length} files, ${formatBytes(r.totalBytes)}${r.offline ? ', from the cache' : `, ${formatBytes(r.fetchedBytes)} downloaded`}${r.tokenFrom ? `; token ${r.tokenFrom === 'given' ? 'given' : `from ${r.tokenFrom}`}` : ''}`,
            `snapshot: ${r.snapshot}`,
            `recorded as model ${r.model.id} "${r.model.name}" (${r.model.modelType}, ${fmt(r.model.params)} parameters) in ${dir}`,
            ...r.notes.map((n) => `note: ${n}`),
          ].join('\n'),
        );
      },
      true,
    );
  }
  if (sub === 'list' || sub === undefined)
    return withApp(v, (app) => {
      const models = app.models.list();
      return out(v, { workspace: app.workspaceOrFail().dir, models }, () =>
        models.length
          ? table([
              ['id', 'name', 'type', 'parameters', 'folder'],
              ...models.map((m) => [String(m.id), m.name, m.modelType, fmt(m.params), m.path]),
            ])
          : 'no models yet: delta-studio models pull org/name, or train --model DIR',
      );
    });
  throw new Error(`models needs a subcommand: pull org/name[@revision] or list (got "${sub}")`);
}
