/**
 * The versioned PostgreSQL schema, version for version the same tables as SQLite's up to version 5
 * (so those versions mean one thing on both), in PostgreSQL's types: encoded values are `bytea`,
 * because a `text` value cannot hold the NUL character an encoded value may contain, and so are
 * errors' texts from version 6 on (PostgreSQL's own: SQLite's text holds NUL); times are `bigint` ms;
 * ids and keys compare byte by byte (`COLLATE "C"`), as SQLite's do, so pages and cursors agree.
 * Migrations are append-only, as SQLite's are.
 *
 * @module
 */

import type { Migration } from "../dialect.ts";

/** Every migration, oldest first. */
export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    statements: [
      `CREATE TABLE reflow_meta (
        key text PRIMARY KEY,
        value bigint NOT NULL
      )`,
      `CREATE TABLE reflow_runs (
        seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        id text COLLATE "C" NOT NULL UNIQUE,
        workflow_name text COLLATE "C" NOT NULL,
        status text NOT NULL,
        input bytea NOT NULL,
        output bytea,
        error_code text,
        error_name text,
        error_message text,
        error_step text,
        idempotency_key text COLLATE "C",
        created_at bigint NOT NULL,
        updated_at bigint NOT NULL,
        due_at bigint,
        lease_id text,
        lease_ms bigint,
        claim_count integer NOT NULL DEFAULT 0,
        UNIQUE (workflow_name, idempotency_key)
      )`,
      // Only claimable runs, in claim order, so the claim reads them off the index and stops at `now`.
      `CREATE INDEX reflow_runs_claim ON reflow_runs (due_at, seq)
        WHERE status IN ('pending', 'running', 'sleeping', 'waiting')`,
      `CREATE TABLE reflow_steps (
        seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        run_id text COLLATE "C" NOT NULL,
        step_name text COLLATE "C" NOT NULL,
        status text NOT NULL,
        output bytea,
        error_code text,
        error_name text,
        error_message text,
        error_step text,
        attempts integer NOT NULL,
        due_at bigint,
        updated_at bigint NOT NULL,
        UNIQUE (run_id, step_name)
      )`,
    ],
  },
  {
    version: 2,
    statements: [
      // Delivery order is seq order: deliveries to one run are serialised by its row lock.
      `CREATE TABLE reflow_events (
        seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        run_id text COLLATE "C" NOT NULL,
        name text COLLATE "C" NOT NULL,
        payload bytea NOT NULL,
        created_at bigint NOT NULL
      )`,
      "CREATE INDEX reflow_events_wait ON reflow_events (run_id, name, seq)",
    ],
  },
  {
    version: 3,
    statements: [
      "CREATE INDEX reflow_runs_created ON reflow_runs (created_at, id)",
      "CREATE INDEX reflow_runs_status_created ON reflow_runs (status, created_at, id)",
      "CREATE INDEX reflow_runs_workflow_created ON reflow_runs (workflow_name, created_at, id)",
      `CREATE TABLE reflow_schedules (
        key text COLLATE "C" PRIMARY KEY,
        workflow_name text COLLATE "C" NOT NULL,
        input bytea NOT NULL,
        recurrence bytea NOT NULL,
        next_run_at bigint NOT NULL,
        last_run_at bigint,
        last_run_id text,
        created_at bigint NOT NULL,
        updated_at bigint NOT NULL
      )`,
      "CREATE INDEX reflow_schedules_due ON reflow_schedules (next_run_at, key)",
    ],
  },
  {
    version: 4,
    statements: [
      // Consecutive claims that took the run from a worker whose lease expired (ClaimedRun.recoveries).
      "ALTER TABLE reflow_runs ADD COLUMN recoveries integer NOT NULL DEFAULT 0",
    ],
  },
  {
    version: 5,
    statements: [
      // The version a run started under (or continues under); NULL for runs stored before it existed.
      `ALTER TABLE reflow_runs ADD COLUMN workflow_version text COLLATE "C"`,
      // The shape of every version an engine registered (see the SQLite schema).
      `CREATE TABLE reflow_workflow_versions (
        workflow_name text COLLATE "C" NOT NULL,
        version text COLLATE "C" NOT NULL,
        shape bytea NOT NULL,
        created_at bigint NOT NULL,
        PRIMARY KEY (workflow_name, version)
      )`,
    ],
  },
  {
    version: 6,
    statements: [
      // PostgreSQL's own version (SQLite's schema ends at 5, its text holds NUL): an error's texts
      // carry whatever a user's error said, NUL included, which text refuses, so they are bytes (UTF-8).
      ...["reflow_runs", "reflow_steps"].map((table) =>
        `ALTER TABLE ${table} ${
          ["error_code", "error_name", "error_message", "error_step"].map((column) =>
            `ALTER COLUMN ${column} TYPE bytea USING convert_to(${column}, 'UTF8')`
          ).join(", ")
        }`
      ),
    ],
  },
];
