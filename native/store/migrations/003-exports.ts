// Schema 3: exports of plugin versions, the process that runs a run (so a crashed one can be told from a live one),
// and lineage: dataset version → run → plugin version → export, read from the foreign keys so it cannot disagree.
export default {
  version: 3,
  name: 'exports',
  sql: `
CREATE TABLE exports (
  id INTEGER PRIMARY KEY,
  plugin_version_id INTEGER NOT NULL REFERENCES plugin_versions(id),
  format TEXT NOT NULL CHECK (format IN ('peft', 'merged', 'onnx', 'bundle')),
  path TEXT NOT NULL,
  options TEXT NOT NULL DEFAULT '{}',
  size INTEGER,
  created_at TEXT NOT NULL
);
ALTER TABLE runs ADD COLUMN pid INTEGER;
ALTER TABLE runs ADD COLUMN host TEXT;
CREATE VIEW lineage (from_kind, from_id, to_kind, to_id) AS
  SELECT 'model', CAST(model_id AS TEXT), 'run', id FROM runs WHERE model_id IS NOT NULL
  UNION ALL SELECT 'dataset_version', CAST(dataset_version_id AS TEXT), 'run', id FROM runs WHERE dataset_version_id IS NOT NULL
  UNION ALL SELECT 'run', run_id, 'plugin_version', CAST(id AS TEXT) FROM plugin_versions WHERE run_id IS NOT NULL
  UNION ALL SELECT 'plugin_version', CAST(plugin_version_id AS TEXT), 'export', CAST(id AS TEXT) FROM exports;
`,
};
