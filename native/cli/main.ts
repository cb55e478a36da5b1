// The delta-studio command line.
import { parseArgs } from 'node:util';
import { doctor } from './doctor.js';
import { demo } from './demo.js';
import { inspect } from './inspect.js';
import { resolveModelFlag } from './model-flag.js';
import { methodSettingHelp, resumeCommand, trainCommand } from './train.js';
import { evalCommand, predictCommand, predictWithPlugins } from './predict.js';
import { passed } from '../autodiff/gradcheck.js';
import { serveCommand } from './serve.js';
import { runSettingHelp, runSettingOptions, type FlagValues } from './flags.js';
import { COLUMN_ROLES } from '../contract/index.js';
import { gpuCommand } from './gpu.js';
import { exportCommand, importPeftCommand, pluginsCommand, runsCommand, workspaceCommand } from './library.js';
import { modelsCommand } from './models.js';

const HELP = `delta-studio — delta tuning of pretrained language models, on your own machine

Usage: delta-studio <command> [options]

Commands:
  train     Import a dataset and train a delta on a model folder (in its own process), then evaluate and save it
  resume    Continue a stopped or killed run from its last checkpoint
  eval      Evaluate a run's delta on a split of its dataset
  predict   Plugins of the workspace (or .delta files) attached to their base, or a run's delta, on one input
  inspect   Show a Hugging Face model folder's module tree: names, types, parameter shapes and counts
  models    pull org/name[@revision] | list       A model by name from the Hugging Face Hub; the workspace's models
  demo      The embedded default: LoRA on the built-in pretrained backbone and reviews, with baselines
  workspace init [DIR] | check [DIR] [--repair]   Create a workspace; verify its database and files
  runs      list | show <id> | compare <id>…      Recorded runs, their metrics and configs
  plugins   list | show | tag | alias | notes | import   The plugin library: versions, aliases, tags
  export    Export a plugin version: PEFT adapter, merged model, ONNX, or a bundle (zip with a model card)
  import-peft  Import a PEFT adapter folder (LoRA, (IA)³, prompt or prefix tuning) as a plugin
  serve     The engine and the UI over HTTP + WebSocket (headless, e.g. on a GPU server), token-protected
  gpu       NVIDIA GPU and CUDA provider status; --install fetches the pinned CUDA provider in one step
  doctor    Show the runtime (onnxruntime version, providers, CUDA status and why not) and check the
            gradient of every op rule on every usable provider

Run 'delta-studio <command> --help' for a command's options.`;

const COMMANDS: Record<
  string,
  {
    help: string;
    positionals?: boolean;
    options: Record<string, { type: 'string' | 'boolean'; default?: string | boolean; multiple?: boolean }>;
    run(v: Record<string, string | boolean | undefined>, positionals: string[]): Promise<number>;
  }
> = {
  inspect: {
    help: `Usage: delta-studio inspect <model-dir> [--delta config.json] [--task T] [--num-labels N] [--json]

Reads a Hugging Face model folder (config.json, model.safetensors or a sharded index; bert, roberta, gpt2,
llama, mistral, qwen2, t5) and prints its module tree: every module by its Hugging Face name with its type,
parameter shapes and counts, repeated blocks folded (layer.0-11 ×12), and the exact parameter total.

With --delta, the modules a delta config modifies are marked in the tree (◆ method) and the report says how many
parameters train (and what % of the backbone), the plugin's size in bytes, and an estimate of training memory.
A config is {"method": "lora", "r": 8, …}, a list of them, or {"deltas": [...]}; methods: lora, bitfit, ia3,
adapter, parallel_adapter, low_rank_adapter, compacter, soft_prompt, prefix, head-only, full.

Options:
  --delta FILE     a delta config (JSON)
  --batch N        batch size of the memory estimate (default 8)
  --seq N          sequence length of the memory estimate (default 128)
  --task T         classification, regression, causal-lm or seq2seq (default: the family's own)
  --num-labels N   classes of a new classification head (default: config.json's)
  --json           one JSON object on the last line: { architecture, model_type, params_total, params_new, modules, task,
                   inputs } and with --delta { trainable_params, trainable_percent, matched_modules, plugin_bytes,
                   estimated_train_memory_bytes, … }`,
    positionals: true,
    options: {
      json: { type: 'boolean', default: false },
      task: { type: 'string' },
      'num-labels': { type: 'string' },
      delta: { type: 'string' },
      batch: { type: 'string' },
      seq: { type: 'string' },
    },
    run: (v, pos) => inspect(pos[0], v),
  },
  models: {
    help: `Usage: delta-studio models pull <org/name>[@revision] [--token T] [--name NAME] [--workspace DIR] [--json]
       delta-studio models list [--workspace DIR] [--json]

pull downloads a model from the Hugging Face Hub by name — the files the engine reads: config.json, the tokenizer
files, generation_config.json, model.safetensors or the index and its shards; never pickles (*.bin, *.pt) — into the
Hugging Face cache that transformers and huggingface-cli share ($HF_HUB_CACHE, else $HF_HOME/hub, else
~/.cache/huggingface/hub: models--org--name/snapshots/<commit>/), checks every file against the sha256 (or git id) the
Hub lists, and records the snapshot folder as a model of the workspace, read in place. An interrupted pull continues
where it stopped when run again; a commit already complete is not asked for again, and with HF_HUB_OFFLINE=1 or no
network the cached snapshot of the revision is used. The revision is a branch, tag or commit (default main).

Options:
  --token T        for gated or private models (else $HF_TOKEN, else the token file of huggingface-cli login:
                   $HF_TOKEN_PATH or $HF_HOME/token); used for this download only, never stored or printed
  --name NAME      the model's name in the workspace (default org/name, with @revision unless main)
  --workspace DIR  the workspace (created if missing; default ./delta-studio-workspace or $DELTA_STUDIO_WORKSPACE)
  --json           progress to stderr, and one JSON object as the last line: { repo, revision, commit, snapshot,
                   cacheDir, files, totalBytes, fetchedBytes, offline, tokenFrom, notes, model, workspace }
Environment: HF_ENDPOINT (a mirror, default https://huggingface.co), HF_HOME, HF_HUB_CACHE, HF_HUB_OFFLINE, HF_TOKEN.`,
    positionals: true,
    options: {
      token: { type: 'string' },
      name: { type: 'string' },
      workspace: { type: 'string' },
      json: { type: 'boolean', default: false },
    },
    run: (v, pos) => modelsCommand(pos, v),
  },
  doctor: {
    help: `Usage: delta-studio doctor [--json]

Prints the onnxruntime version, the execution providers present, whether CUDA can be used (and why not),
then runs the finite-difference gradient check of every op rule on every usable provider (CPU, and CUDA when
it loads). Exit status 1 when any check fails.

Options:
  --json    print progress to stderr and one JSON object as the last line of stdout:
            { ort, providers, cuda, rules, checked, failed, max_rel_err, tolerance, results }`,
    options: { json: { type: 'boolean', default: false } },
    async run(v) {
      const json = v.json === true;
      const log = (s: string): void => {
        (json ? process.stderr : process.stdout).write(`${s}\n`);
      };
      const report = await doctor((r) => {
        const ok = passed(r);
        log(
          `  ${ok ? 'ok  ' : 'FAIL'} ${r.device.padEnd(4)} ${r.label.padEnd(52)} f32 ${r.err32.toExponential(1)}${r.err64 !== undefined ? `  f64 ${r.err64.toExponential(1)}` : ''}${r.error ? `  ${r.error}` : ''}`,
        );
      });
      log(`onnxruntime ${report.ort} (node ${report.node}, ${report.platform})`);
      log(`providers: ${report.providers.join(', ')}`);
      log(`CUDA: ${report.cuda.usable ? 'usable' : `not used — ${report.cuda.reason}`}`);
      log(
        `state on the device: ${report.device_state.available ? 'ready (resident-state addon)' : `no — ${report.device_state.reason}`}`,
      );
      for (const [d, f] of Object.entries(report.fused_attention))
        log(
          `fused attention on ${d}: ${f.ok ? `runs, with its gradients (largest difference from them written out ${f.max_error!.toExponential(1)})` : `no — ${f.reason}`}`,
        );
      log(
        `gradient rules: ${report.rules}, checked: ${report.checked}, failed: ${report.failed.length}, max relative error ${report.max_rel_err.toExponential(2)}`,
      );
      for (const f of report.failed) log(`  failed: ${f}`);
      if (json) process.stdout.write(`${JSON.stringify(report)}\n`);
      return report.failed.length ? 1 : 0;
    },
  },
  demo: {
    help: `Usage: delta-studio demo [--device auto|cpu|cuda] [--workspace DIR] [--json]

The embedded default, end to end: imports the demo reviews (800 labelled reviews; 600 test reviews whose adjectives
never appear in the labelled ones), tunes LoRA (r=8 on q and v) on the demo backbone — a small Llama-style model
pretrained by this engine on the project's own corpus (scripts/make-demo.ts) — evaluates it, saves the delta, then
runs the same on an untrained copy of the backbone and full fine-tuning, and prints the comparison.

Options:
  --device D       auto (CUDA when it loads, else CPU, saying why), cpu or cuda (default auto)
  --workspace DIR  where datasets and runs go (default: a new temporary folder)
  --json           one JSON object as the last line of stdout: { workspace, dataset, device, runs: [...], plugin }`,
    options: {
      device: { type: 'string', default: 'auto' },
      workspace: { type: 'string' },
      json: { type: 'boolean', default: false },
    },
    run: (v) => demo(v),
  },
  train: {
    help: `Usage: delta-studio train --model DIR|NAME --data FILE [options]

Imports FILE (csv, tsv, jsonl or json) into the workspace, trains a delta in its own process, evaluates it and saves
it. Checkpoints let 'delta-studio resume <run-dir>' continue a killed run exactly.

Options:
  --model DIR|NAME     Hugging Face model folder, or the name of a model in the workspace (models pull/list)
  --data FILE          training data; --validation FILE for a given validation split, else --validation-fraction
                       X of the rows by seed (default 0.1; 0: no validation, no evaluation); --test FILE: a
                       held-out test split, evaluated once at the end (test/… metrics)
  --columns A,B,…      the files have no header line: these are their columns, in order (CSV/TSV; all files)
  --task T             classification, pair-classification, regression, causal-lm, seq2seq or chat (default
                       classification)
  --text C, --text-pair C, --label C, --prompt C, --completion C, --source C, --target C   column names
  --messages C, --instruction C, --input C, --output C, --system C   a chat's columns: a list of messages
                       ({role, content}, or ShareGPT's {from, value}), or alpaca's instruction, input, output
  --chat-template T    a chat's template: a name (chatml, or one of the model's) or a .jinja file (default: the
                       model's own; a model without one is refused, offering chatml)
  --method M           lora, bitfit, ia3, adapter, parallel_adapter, low_rank_adapter, compacter, soft_prompt,
                       prefix, head-only or full (default lora); --r N and --alpha X for LoRA
  --set KEY=VALUE      a setting of the method (repeatable), e.g. --method adapter --set bottleneck_dim=32,
                       --set target_modules=q_proj,v_proj; the methods and their settings are listed below
  --delta FILE         a delta config (JSON: one method, a list, or {"deltas": […]}) instead of --method/--set
  --plugin NAME        the plugin its delta becomes a new version of (default <dataset>-<method>)
  --copy-model         copy the model folder into the workspace (default: reference it where it is)
  --dataset-name NAME  the dataset's name in the workspace (default: the data file's name)
  --name TEXT          a name for the run
  --workspace DIR      the workspace (created if missing; default ./delta-studio-workspace or $DELTA_STUDIO_WORKSPACE)
  --json               one JSON object as the last line: { runId, runDir, workspace, status, steps, metrics, best,
                       delta, plugin: {name, version, file, sha256}, tokensPerSec, device }
Training settings (the same defaults and ranges as the app's New run form; fp16 precision is mixed precision:
frozen matrices in float16, deltas and optimizer in float32):
${runSettingHelp()}
Methods and their settings (defaults; every method also takes target_modules, modified_modules, exclude_modules;
PEFT's names lora_alpha, lora_dropout and use_rslora are accepted too):
${methodSettingHelp()}`,
    options: {
      ...Object.fromEntries(
        [
          'model',
          'data',
          'validation',
          'validation-fraction',
          'test',
          'columns',
          'task',
          ...COLUMN_ROLES.map((r) => r.replace('_', '-')),
          'method',
          'r',
          'alpha',
          'delta',
          'workspace',
          'plugin',
          'dataset-name',
          'name',
          'chat-template',
        ].map((k) => [k, { type: 'string' as const }]),
      ),
      ...runSettingOptions(),
      set: { type: 'string' as const, multiple: true },
      json: { type: 'boolean' as const, default: false },
      'copy-model': { type: 'boolean' as const, default: false },
    },
    // --set is repeatable: parseArgs gives it as a list.
    run: (v) => trainCommand(v as FlagValues),
  },
  eval: {
    help: `Usage: delta-studio eval <run-dir> [--split train|validation|test] [--best] [--json]

Evaluates a run's saved delta (or its best one) on a split of the run's dataset: loss and accuracy, macro-F1 and
MCC (classification), Pearson, Spearman and MSE (regression), or perplexity (language models).`,
    positionals: true,
    options: {
      split: { type: 'string' },
      best: { type: 'boolean', default: false },
      json: { type: 'boolean', default: false },
    },
    run: (v, pos) => evalCommand(pos[0], v),
  },
  predict: {
    help: `Usage: delta-studio predict --plugin NAME[@VERSION] [--plugin …] --text "…" [options]
       delta-studio predict <run-dir> --text "…" [--best]

Runs plugins on one input: a classification's label and probabilities, a regression's value, or a language model's
greedy continuation. Several --plugin attach together to one base (combination: e.g. a LoRA plugin and an (IA)³
plugin); a .delta file path works as well as a workspace name. The base is the one recorded for the plugins' run, or
--model; a plugin trained on another base is refused unless --force.

Options:
  --plugin REF         a plugin version of the workspace ("name", "name@3", "name@best") or a .delta file; repeatable
  --model DIR|NAME     the base model folder or workspace model name (default: the plugins' own)
  --text-pair "…"      the second text of a pair task
  --compare-base       also show the bare base model's answer
  --max-new-tokens N   language models (default 32; 128 with --chat)
  --chat               a conversation: the reply to --text as the user's message (after --system "…"), written with
                       the chat template and printed as it is generated; without --text, each line of the input is
                       the user's next message (multi-turn). Replies stop at the template's end of turn
  --chat-template T    the chat template: a name (chatml, or one of the model's) or a .jinja file (default: the one
                       the plugins trained with, else the model's own)
  --device auto|cpu|cuda, --force, --workspace DIR, --json`,
    positionals: true,
    options: {
      text: { type: 'string' },
      'text-pair': { type: 'string' },
      'max-new-tokens': { type: 'string' },
      best: { type: 'boolean', default: false },
      json: { type: 'boolean', default: false },
      plugin: { type: 'string', multiple: true },
      model: { type: 'string' },
      device: { type: 'string' },
      workspace: { type: 'string' },
      force: { type: 'boolean', default: false },
      'compare-base': { type: 'boolean', default: false },
      chat: { type: 'boolean', default: false },
      system: { type: 'string' },
      'chat-template': { type: 'string' },
    },
    // --plugin is repeatable: parseArgs gives it as a list.
    run: (v, pos) =>
      v.plugin
        ? predictWithPlugins(v as Record<string, string | boolean | string[] | undefined>)
        : predictCommand(pos[0], v),
  },
  workspace: {
    help: `Usage: delta-studio workspace init [DIR] [--json]
       delta-studio workspace check [DIR] [--repair] [--json]

init creates a workspace (a folder with workspace.db and datasets/, runs/, plugins/, exports/, models/), or opens and
migrates an existing one. check verifies it: SQLite's integrity and foreign-key checks, every plugin file's size and
sha256 against the database, datasets and copied models present, runs left running by a dead process (marked
interrupted), and leftovers of interrupted writes: temp files and orphans (files whose record was never committed).
--repair deletes temp files and moves orphans to lost+found/; damage it cannot repair is reported. Exit status 1 when
errors remain. DIR defaults to --workspace, $DELTA_STUDIO_WORKSPACE, or ./delta-studio-workspace.`,
    positionals: true,
    options: {
      json: { type: 'boolean', default: false },
      repair: { type: 'boolean', default: false },
      workspace: { type: 'string' },
    },
    run: async (v, pos) => workspaceCommand(pos, v),
  },
  runs: {
    help: `Usage: delta-studio runs list [--status S] | show <run-id> | compare <run-id> <run-id>… [--workspace DIR] [--json]

list: every run with status (queued, running, paused, finished, failed, diverged, interrupted, cancelled), method,
steps and latest evaluation metrics. show: one run's config, timings and metric series. compare: runs side by side —
trainable parameters and %, time, and every evaluation metric.`,
    positionals: true,
    options: { json: { type: 'boolean', default: false }, workspace: { type: 'string' }, status: { type: 'string' } },
    run: async (v, pos) => runsCommand(pos, v),
  },
  plugins: {
    help: `Usage: delta-studio plugins list
       delta-studio plugins show <name>
       delta-studio plugins tag <name[@version]> <tag>… [--remove TAG]
       delta-studio plugins alias <name@version> <alias> [--delete]
       delta-studio plugins notes <name@version> "text"
       delta-studio plugins import <file.delta> [--name NAME]
Options: --workspace DIR, --json

A plugin is a named series of versions (v1, v2, …), each one .delta file (safetensors: only the delta parameters
and a trained head, with its method, config, task, labels, base-model fingerprint, run and metrics). Aliases name
versions: "latest" (always the newest), "best" (best evaluation metric), and your own. A version is named
"name@3", "name@best" or just "name" (the latest).`,
    positionals: true,
    options: {
      json: { type: 'boolean', default: false },
      workspace: { type: 'string' },
      remove: { type: 'string' },
      delete: { type: 'boolean', default: false },
      name: { type: 'string' },
    },
    run: async (v, pos) => pluginsCommand(pos, v),
  },
  export: {
    help: `Usage: delta-studio export <name[@version]> --format peft|merged|onnx|bundle [--out DIR] [--name NAME] [options]

Writes a plugin version for use elsewhere, into DIR (default: the workspace's exports/) as NAME (default
<plugin>-v<version>-<format>); a NAME that leaves DIR is refused. Nothing is left half-written.
  peft     adapter_config.json + adapter_model.safetensors as PEFT saves them (LoRA, (IA)³, prompt and prefix tuning)
  merged   a Hugging Face model folder with the delta merged into the weights (LoRA, (IA)³ and weight-replacing
           methods), sharded like save_pretrained, config and tokenizer files copied
  onnx     an inference model (logits) of base + delta for plain onnxruntime; --mode inputs keeps the delta as
           graph inputs so another plugin of the same structure can be fed (hot-swap)
  bundle   a zip: the .delta file, a model card (README.md), the run's config and the plugin's metadata
Options:
  --model DIR|NAME  the base model folder or workspace model name (default: the one recorded for the plugin's run)
  --mode baked|inputs   (onnx)     --dtype source|float32   (merged; default source: each weight's own dtype)
  --overwrite       replace an existing export of that name
  --force           export onto a base model other than the one the plugin was trained on
  --workspace DIR, --json`,
    positionals: true,
    options: Object.fromEntries([
      ...['format', 'out', 'name', 'model', 'mode', 'dtype', 'workspace'].map((k) => [k, { type: 'string' as const }]),
      ...['json', 'overwrite', 'force'].map((k) => [k, { type: 'boolean' as const, default: false }]),
    ]),
    run: async (v, pos) => exportCommand(pos, v),
  },
  'import-peft': {
    help: `Usage: delta-studio import-peft <peft-adapter-dir> --model <base-model-dir> [--name NAME] [--task T] [--labels a,b] [--workspace DIR] [--json]

Reads a PEFT adapter folder (adapter_config.json + adapter_model.safetensors; LoRA, and (IA)³, prompt and prefix
tuning) and registers it as a plugin version on that base model. adapter_model.bin is refused: it is a pickle and
loading it can run code.`,
    positionals: true,
    options: {
      model: { type: 'string' },
      name: { type: 'string' },
      task: { type: 'string' },
      labels: { type: 'string' },
      workspace: { type: 'string' },
      json: { type: 'boolean', default: false },
    },
    run: async (v, pos) => importPeftCommand(pos, v),
  },
  serve: {
    help: `Usage: delta-studio serve [--workspace DIR] [--host H] [--port N] [--allow DIR]… [--token T] [--json]

Serves the engine and the UI over HTTP + WebSocket (headless mode: the engine on a GPU server, the UI in your
browser). Prints the URL with its token; every request needs the token (a cookie the URL sets, or
Authorization: Bearer <token>). Paths the UI names (models, data, exports) must lie in the workspace or a
folder given with --allow. Ctrl-C stops it; a training run stops after its step and can be resumed.

Options:
  --workspace DIR   a workspace to open (created if new); its folder is allowed
  --host H          address to listen on (default 127.0.0.1; anything else is reachable from the network:
                    prefer an SSH tunnel, ssh -L 8470:127.0.0.1:8470 server)
  --port N          port (default 8470; 0 picks a free one)
  --allow DIR       a folder the UI may import models and data from or export to; repeatable
  --token T         the access token (default: 32 random bytes, hex; at least 16 characters)
  --public-host H:P another host:port the UI is opened at (a tunnel to another local port, a proxy); repeatable.
                    Requests must name the server (Host) and come from its own pages (Origin): other names are
                    refused, so that no other site or local port can use your browser's cookie
  --json            print {"url", "token", "port"} as one JSON line`,
    options: {
      workspace: { type: 'string' },
      host: { type: 'string' },
      port: { type: 'string' },
      allow: { type: 'string', multiple: true },
      'public-host': { type: 'string', multiple: true },
      token: { type: 'string' },
      json: { type: 'boolean', default: false },
    },
    // --allow is repeatable: parseArgs gives it as a list.
    run: (v) => serveCommand(v as Record<string, string | boolean | string[] | undefined>),
  },
  gpu: {
    help: `Usage: delta-studio gpu [--install] [--data-dir DIR] [--json]

Says whether this machine can train on an NVIDIA GPU: the GPU and its driver, the CUDA provider of onnxruntime
(present next to its core library? does a CUDA session load?), and what is missing. With --install: downloads the
pinned provider (onnxruntime 1.29.0, CUDA 13, from the npm registry; sha256 and sha512 checked), unpacks it into the
data folder (default: the app's, ~/.config/delta-studio) and copies it next to onnxruntime's core library.`,
    options: {
      install: { type: 'boolean', default: false },
      'data-dir': { type: 'string' },
      json: { type: 'boolean', default: false },
    },
    run: (v) => gpuCommand(v),
  },
  resume: {
    help: `Usage: delta-studio resume <run-id> [--workspace DIR] [--json]     (or: resume <workspace>/runs/<run-id>)

Continues a run that was stopped, cancelled or killed (status interrupted) from its last checkpoint; it ends with the
metrics an uninterrupted run with the same seed would have, and its delta becomes a plugin version.`,
    positionals: true,
    options: { json: { type: 'boolean', default: false }, workspace: { type: 'string' } },
    run: (v, pos) => resumeCommand(pos[0], v),
  },
};

/**
 * `--lr -5`: a negative number after an option that takes a value is that value (then checked, and refused with the
 * option's range), not an unknown option.
 */
function negativeValues(args: string[], options: Record<string, { type: 'string' | 'boolean' }>): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const name = args[i].startsWith('--') && !args[i].includes('=') ? args[i].slice(2) : undefined;
    if (name && options[name]?.type === 'string' && /^-(\d|\.\d)/.test(args[i + 1] ?? '')) {
      out.push(`${args[i]}=${args[i + 1]}`);
      i++;
    } else out.push(args[i]);
  }
  return out;
}

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (!cmd || cmd === '--help' || cmd === '-h' || cmd === 'help') {
    process.stdout.write(`${HELP}\n`);
    return cmd ? 0 : 1;
  }
  const c = COMMANDS[cmd];
  if (!c) {
    process.stderr.write(`delta-studio: unknown command "${cmd}" (commands: ${Object.keys(COMMANDS).join(', ')})\n`);
    return 2;
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    process.stdout.write(`${c.help}\n`);
    return 0;
  }
  let values: Record<string, string | boolean | undefined>;
  let positionals: string[];
  try {
    const parsed = parseArgs({
      args: negativeValues(rest, c.options),
      options: c.options,
      strict: true,
      allowPositionals: !!c.positionals,
    });
    values = parsed.values as Record<string, string | boolean | undefined>; // lists only for "multiple" options (predict --plugin)
    positionals = parsed.positionals;
  } catch (e) {
    process.stderr.write(`delta-studio ${cmd}: ${(e as Error).message}\n${c.help}\n`);
    return 2;
  }
  // Every command's --model takes a model's name in the workspace as well as a folder.
  if (c.options && 'model' in c.options) await resolveModelFlag(values);
  return c.run(values, positionals);
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e: Error) => {
    process.stderr.write(`delta-studio: ${e.message}\n`);
    process.exitCode = 1;
  },
);
