// Every schema change is one numbered migration, applied in order, each in one transaction. Never edit a migration
// that has shipped: add the next one (and a fixture database of the version before it, tests/fixtures/workspaces).
import m001 from './001-runs.js';
import m002 from './002-plugins.js';
import m003 from './003-exports.js';

export interface Migration {
  version: number;
  name: string;
  sql: string;
}

export const MIGRATIONS: Migration[] = [m001, m002, m003];
export const SCHEMA_VERSION = MIGRATIONS[MIGRATIONS.length - 1].version;
