// Schema 2: the plugin library — plugins, their numbered versions (file, sha256, metrics, where they came from),
// movable aliases (latest, best, the user's own) and tags.
export default {
  version: 2,
  name: 'plugins',
  sql: `
CREATE TABLE plugins (
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL UNIQUE,
  description TEXT NOT NULL DEFAULT '',
  created_at TEXT NOT NULL
);
CREATE TABLE plugin_versions (
  id INTEGER PRIMARY KEY,
  plugin_id INTEGER NOT NULL REFERENCES plugins(id),
  version INTEGER NOT NULL CHECK (version >= 1),
  file TEXT NOT NULL UNIQUE,          -- relative to the workspace
  sha256 TEXT NOT NULL,
  size INTEGER NOT NULL,
  method TEXT NOT NULL,               -- e.g. "lora" or "lora+ia3"
  methods TEXT NOT NULL,              -- JSON: the delta configs
  task TEXT NOT NULL,
  labels TEXT,                        -- JSON list
  base_fingerprint TEXT NOT NULL,
  model_id INTEGER REFERENCES models(id),
  run_id TEXT REFERENCES runs(id),
  source TEXT NOT NULL,               -- "run", or what it was imported from
  metrics TEXT NOT NULL DEFAULT '{}', -- JSON
  trainable_params INTEGER NOT NULL,
  notes TEXT NOT NULL DEFAULT '',
  created_at TEXT NOT NULL,
  UNIQUE (plugin_id, version)
);
CREATE TABLE plugin_aliases (
  plugin_id INTEGER NOT NULL REFERENCES plugins(id),
  alias TEXT NOT NULL,
  version_id INTEGER NOT NULL REFERENCES plugin_versions(id),
  PRIMARY KEY (plugin_id, alias)
) WITHOUT ROWID;
CREATE TABLE plugin_tags (
  version_id INTEGER NOT NULL REFERENCES plugin_versions(id) ON DELETE CASCADE,
  tag TEXT NOT NULL,
  PRIMARY KEY (version_id, tag)
) WITHOUT ROWID;
`,
};
