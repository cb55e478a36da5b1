// Schema 1: models, datasets and their versions, runs, and append-only metric series with a latest-values summary.
export default {
  version: 1,
  name: 'runs',
  sql: `
CREATE TABLE models (
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL,
  path TEXT NOT NULL,                 -- absolute when referenced in place, relative to the workspace when copied in
  copied INTEGER NOT NULL DEFAULT 0 CHECK (copied IN (0, 1)),
  model_type TEXT NOT NULL,
  architecture TEXT,
  fingerprint TEXT NOT NULL,
  params INTEGER,
  added_at TEXT NOT NULL,
  UNIQUE (fingerprint, path)
);
CREATE TABLE datasets (
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL UNIQUE,
  created_at TEXT NOT NULL
);
CREATE TABLE dataset_versions (
  id INTEGER PRIMARY KEY,
  dataset_id INTEGER NOT NULL REFERENCES datasets(id),
  digest TEXT NOT NULL,
  dir TEXT NOT NULL,                  -- relative to the workspace
  source TEXT NOT NULL,
  task TEXT NOT NULL,
  schema TEXT NOT NULL,               -- JSON: column mapping, labels
  stats TEXT NOT NULL,                -- JSON: rows per split, label counts
  created_at TEXT NOT NULL,
  UNIQUE (dataset_id, digest)
);
CREATE TABLE runs (
  id TEXT PRIMARY KEY,
  name TEXT,
  status TEXT NOT NULL CHECK (status IN ('queued', 'running', 'paused', 'finished', 'failed', 'diverged', 'interrupted', 'cancelled')),
  config TEXT NOT NULL,               -- JSON: the whole training config
  method TEXT NOT NULL,
  trainable_params INTEGER,
  total_params INTEGER,
  device TEXT,
  model_id INTEGER REFERENCES models(id),
  dataset_version_id INTEGER REFERENCES dataset_versions(id),
  dir TEXT NOT NULL,                  -- relative to the workspace
  created_at TEXT NOT NULL,
  started_at TEXT,
  finished_at TEXT,
  steps INTEGER NOT NULL DEFAULT 0,
  total_steps INTEGER,
  train_seconds REAL,
  tokens_per_sec REAL,
  reason TEXT                         -- why it failed, diverged or stopped
);
CREATE INDEX runs_created ON runs(created_at);
CREATE TABLE metrics (
  id INTEGER PRIMARY KEY,
  run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  key TEXT NOT NULL,
  step INTEGER NOT NULL,
  value REAL,                         -- NULL when not a number
  nan INTEGER NOT NULL DEFAULT 0 CHECK (nan IN (0, 1)),
  at REAL NOT NULL                    -- unix seconds
);
CREATE INDEX metrics_series ON metrics(run_id, key, step);
CREATE TABLE metric_latest (
  run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  key TEXT NOT NULL,
  step INTEGER NOT NULL,
  value REAL,
  nan INTEGER NOT NULL,
  PRIMARY KEY (run_id, key)
) WITHOUT ROWID;
CREATE TRIGGER metrics_append_only BEFORE UPDATE ON metrics BEGIN
  SELECT RAISE(ABORT, 'metrics are append-only');
END;
CREATE TRIGGER metrics_latest AFTER INSERT ON metrics BEGIN
  INSERT INTO metric_latest (run_id, key, step, value, nan) VALUES (NEW.run_id, NEW.key, NEW.step, NEW.value, NEW.nan)
  ON CONFLICT (run_id, key) DO UPDATE SET step = excluded.step, value = excluded.value, nan = excluded.nan
  WHERE excluded.step >= metric_latest.step;
END;
`,
};
