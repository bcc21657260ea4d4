/**
 * The versioned SQLite schema: each migration moves the database from the previous version to
 * its own, and `reflow_meta` records the version reached. Migrations are append-only: a
 * released one is never edited, a change is a new one.
 *
 * Tables are prefixed `reflow_` so that Reflow can share a database file with the application's
 * own tables.
 *
 * @module
 */

import type { Migration } from "../dialect.ts";

export type { Migration };

/** Every migration, oldest first. */
export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    statements: [
      `CREATE TABLE reflow_meta (
        key TEXT PRIMARY KEY NOT NULL,
        value INTEGER NOT NULL
      )`,
      // seq is the rowid: creation order for claim ties, stable across VACUUM because it is declared.
      `CREATE TABLE reflow_runs (
        seq INTEGER PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        workflow_name TEXT NOT NULL,
        status TEXT NOT NULL,
        input TEXT NOT NULL,
        output TEXT,
        error_code TEXT,
        error_name TEXT,
        error_message TEXT,
        error_step TEXT,
        idempotency_key TEXT,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        due_at INTEGER,
        lease_id TEXT,
        lease_ms INTEGER,
        claim_count INTEGER NOT NULL DEFAULT 0,
        UNIQUE (workflow_name, idempotency_key)
      )`,
      // Only claimable runs are indexed, and the rowid (seq) completes the key, so the claim's
      // ORDER BY due_at, seq is read straight off the index and stops at the first run not yet due.
      `CREATE INDEX reflow_runs_claim ON reflow_runs (due_at)
        WHERE status IN ('pending', 'running', 'sleeping', 'waiting')`,
      // seq keeps first-written order: an upsert updates the row in place and keeps its seq.
      `CREATE TABLE reflow_steps (
        seq INTEGER PRIMARY KEY,
        run_id TEXT NOT NULL,
        step_name TEXT NOT NULL,
        status TEXT NOT NULL,
        output TEXT,
        error_code TEXT,
        error_name TEXT,
        error_message TEXT,
        error_step TEXT,
        attempts INTEGER NOT NULL,
        due_at INTEGER,
        updated_at INTEGER NOT NULL,
        UNIQUE (run_id, step_name)
      )`,
    ],
  },
  {
    version: 2,
    statements: [
      // Events not yet consumed by a wait; a wait deletes the row it consumes. seq (the rowid) is
      // the order of delivery: a new row's rowid is above every row still present.
      `CREATE TABLE reflow_events (
        seq INTEGER PRIMARY KEY,
        run_id TEXT NOT NULL,
        name TEXT NOT NULL,
        payload TEXT NOT NULL,
        created_at INTEGER NOT NULL
      )`,
      // A wait reads the first entry of (run, name) straight off the index.
      "CREATE INDEX reflow_events_wait ON reflow_events (run_id, name, seq)",
    ],
  },
  {
    version: 3,
    statements: [
      // Run listing, newest first by (created_at, id), walked backwards: one index per common
      // filter (none, one status, one workflow), so a page never sorts the matching runs. The
      // status index also serves retention, walked forwards per finished status. (A partial index
      // of finished runs on their finish time was tried: every step commit changes updated_at, so
      // SQLite maintained it on every commit, costing a fifth of the step throughput.)
      "CREATE INDEX reflow_runs_created ON reflow_runs (created_at, id)",
      "CREATE INDEX reflow_runs_status_created ON reflow_runs (status, created_at, id)",
      "CREATE INDEX reflow_runs_workflow_created ON reflow_runs (workflow_name, created_at, id)",
      `CREATE TABLE reflow_schedules (
        key TEXT PRIMARY KEY NOT NULL,
        workflow_name TEXT NOT NULL,
        input TEXT NOT NULL,
        recurrence TEXT NOT NULL,
        next_run_at INTEGER NOT NULL,
        last_run_at INTEGER,
        last_run_id TEXT,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
      )`,
      // The due schedules in (next_run_at, key) order straight off the index, stopping at the first not due.
      "CREATE INDEX reflow_schedules_due ON reflow_schedules (next_run_at, key)",
    ],
  },
  {
    version: 4,
    statements: [
      // Consecutive claims that took the run from a worker whose lease expired, with no commit
      // that kept it running in between (ClaimedRun.recoveries); bounds crash loops.
      "ALTER TABLE reflow_runs ADD COLUMN recoveries INTEGER NOT NULL DEFAULT 0",
    ],
  },
  {
    version: 5,
    statements: [
      // The version a run started under (or continues under); NULL for runs stored before it existed.
      "ALTER TABLE reflow_runs ADD COLUMN workflow_version TEXT",
      // The shape of every version an engine registered, so that any engine can compare a run's
      // definition with its own without the old code. Small: one row per deployed version.
      `CREATE TABLE reflow_workflow_versions (
        workflow_name TEXT NOT NULL,
        version TEXT NOT NULL,
        shape TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        PRIMARY KEY (workflow_name, version)
      )`,
    ],
  },
];

/** The schema version this code writes and reads. */
export const SCHEMA_VERSION: number = MIGRATIONS[MIGRATIONS.length - 1]!.version;
