/**
 * The SQLite dialect: the texts of `statements.ts` with their parameter builders, and the
 * strategies that lean on SQLite's single writer: every write transaction begins with `BEGIN
 * IMMEDIATE`, so a read followed by a write in one transaction cannot interleave with another
 * writer, and claims, slots and waits read first, then write.
 *
 * @module
 */

import type { ClaimedRow, Dialect, WaitFinding } from "../dialect.ts";
import { advanceOneByOne, createdNames, scheduleParams, statement, stepParams } from "../dialect.ts";
import type { SqlConnection } from "../driver.ts";
import { importReflowTs } from "./reflow_ts_import.ts";
import { MIGRATIONS } from "./schema.ts";
import * as SQL from "./statements.ts";

const META_TABLE = "reflow_meta";
/** The tables and indexes the migrations create, as `SELECT_SCHEMA_OBJECTS` takes them. */
const SCHEMA_NAMES = JSON.stringify(MIGRATIONS.flatMap(createdNames));

/** Reflow's SQL for SQLite. */
export const sqliteDialect: Dialect = {
  name: "sqlite",
  migrations: MIGRATIONS,
  begin: statement(SQL.BEGIN),
  commit: statement(SQL.COMMIT),
  rollback: statement(SQL.ROLLBACK),
  // BEGIN IMMEDIATE takes the database's one write lock: concurrent initialisers already queue.
  migrationLock: null,
  // None of these changes the file, so they may run before initialize() has checked it.
  connectionSetup: ({ busyTimeoutMs, synchronous, walAutocheckpointPages, walSizeLimitBytes }) => [
    statement(SQL.pragmas.busyTimeout(busyTimeoutMs)),
    statement(SQL.pragmas.synchronous(synchronous)),
    statement(SQL.pragmas.walAutocheckpoint(walAutocheckpointPages)),
    statement(SQL.pragmas.journalSizeLimit(walSizeLimitBytes)),
  ],
  // With no busy wait: a checkpoint that would wait for a reader blocks a synchronous library's thread.
  async checkpoint(connection, busyTimeoutMs) {
    await connection.query(statement(SQL.pragmas.busyTimeout(0)));
    try {
      const [row] = await connection.query(statement(SQL.CHECKPOINT_TRUNCATE));
      return row === undefined || Number(row.busy) === 0;
    } finally {
      await connection.query(statement(SQL.pragmas.busyTimeout(busyTimeoutMs)));
    }
  },
  databaseSetup: [statement(SQL.pragmas.journalModeWal)],
  // reflow-ts 0.7 kept its runs in workflow_* tables of the same kind of file.
  importForeign: importReflowTs,
  async readSchemaState(connection) {
    const rows = await connection.query(statement(SQL.SELECT_SCHEMA_OBJECTS, SCHEMA_NAMES));
    const present = new Set(rows.map((row) => row.name as string));
    if (!present.has(META_TABLE)) return { present, version: undefined };
    const [row] = await connection.query(statement(SQL.SELECT_SCHEMA_VERSION));
    return { present, version: row === undefined ? null : row.value };
  },
  writeSchemaVersion: (version) => statement(SQL.UPSERT_SCHEMA_VERSION, version),
  // One host: the workers' clock is the database's.
  serverClock: null,
  wake: null,
  listen: null,

  insertRun: ({ id, workflowName, workflowVersion, input, idempotencyKey, createdAt }) =>
    statement(
      SQL.INSERT_RUN,
      id,
      workflowName,
      workflowVersion ?? null,
      input,
      idempotencyKey,
      createdAt,
      createdAt,
      createdAt,
    ),
  selectRunByKey: (workflowName, key) => statement(SQL.SELECT_RUN_BY_KEY, workflowName, key),
  selectRun: (runId) => statement(SQL.SELECT_RUN, runId),
  selectSteps: (runId) => statement(SQL.SELECT_STEPS, runId),
  selectStepsOfRuns: (runIds) => statement(SQL.SELECT_STEPS_OF_RUNS, JSON.stringify(runIds)),
  // A SELECT, then one UPDATE per row: under BEGIN IMMEDIATE no other claimer runs in between.
  async claim(connection: SqlConnection, plan): Promise<ClaimedRow[]> {
    const { names, limit, now, expiry, leaseMs, newLeaseId } = plan;
    const rows = await connection.query(statement(SQL.SELECT_CLAIMABLE, now, JSON.stringify(names), limit));
    const claimed: ClaimedRow[] = [];
    for (const row of rows) {
      const leaseId = newLeaseId();
      // Taken from a worker whose lease expired: one more recovery in a row (see ClaimedRun.recoveries).
      row.recoveries = row.status === "running" ? Number(row.recoveries) + 1 : 0;
      await connection.execute(
        statement(SQL.CLAIM_RUN, leaseId, expiry, leaseMs, row.recoveries, now, row.seq!),
      );
      row.status = "running";
      row.lease_id = leaseId;
      row.due_at = expiry;
      row.claim_count = (row.claim_count as number) + 1;
      row.updated_at = now;
      claimed.push({ row, leaseId });
    }
    return claimed;
  },
  heartbeatRun: (runId, leaseId, expiry, now) =>
    statement(SQL.HEARTBEAT_RUN, expiry, expiry === null ? now : 0, runId, leaseId),
  expireInstanceLeases: (prefix, now) =>
    statement(SQL.EXPIRE_INSTANCE_LEASES, now, prefix.length, prefix, now),
  selectLeaseHeld: (runId, leaseId) => statement(SQL.SELECT_LEASE_HELD, runId, leaseId),
  renewRun: (runId, leaseId, expiry, now) => statement(SQL.RENEW_RUN, expiry, now, now, runId, leaseId),
  parkRun({ runId, leaseId, status, now, dueAt, output, error }) {
    const setOutput = output !== undefined;
    const setError = error !== undefined;
    return statement(
      SQL.PARK_RUN,
      status,
      dueAt,
      now,
      setOutput,
      output ?? null,
      setError,
      error?.code ?? null,
      setError,
      error?.name ?? null,
      setError,
      error?.message ?? null,
      setError,
      error?.stepName ?? null,
      runId,
      leaseId,
    );
  },
  updateRunStatus: (runId, status, now) =>
    statement(SQL.UPDATE_RUN_STATUS, status, now, status, status, now, status, now, runId),
  // Under the group's BEGIN IMMEDIATE, each advance's fence and upsert are statements of their own.
  advanceRuns: (connection, advances) => advanceOneByOne(sqliteDialect, connection, advances),
  advancesAtomic: () => false,
  claimAtomic: false,
  upsertStep: (step) => statement(SQL.UPSERT_STEP, ...stepParams(step)),
  upsertStepIfRun: (step) => statement(SQL.UPSERT_STEP_IF_RUN, ...stepParams(step), step.runId),
  upsertStepIfLeased: (step, leaseId) =>
    statement(SQL.UPSERT_STEP_IF_LEASED, ...stepParams(step), step.runId, leaseId),
  // The insert checks the run; the write lock keeps a wait from reading between insert and wake.
  async deliverEvent(connection, runId, { name, payload, createdAt }) {
    const insert = statement(
      SQL.INSERT_EVENT,
      runId,
      name,
      payload,
      createdAt,
      runId,
      runId,
      name,
      runId,
      name,
    );
    if ((await connection.execute(insert)).changes !== 1) return false;
    await connection.execute(statement(SQL.WAKE_RUN, createdAt, createdAt, createdAt, runId, runId, name));
    return true;
  },
  // The fence and the event in one read; the write lock keeps a delivery out until the commit.
  async findWait(connection, runId, leaseId, name): Promise<WaitFinding> {
    const [row] = await connection.query(statement(SQL.SELECT_WAIT, name, runId, leaseId));
    if (row === undefined) return { held: false };
    if (row.seq === null) return { held: true, event: null };
    return { held: true, event: { seq: Number(row.seq), payload: row.payload! } };
  },
  deleteEvent: (seq) => statement(SQL.DELETE_EVENT, seq),
  selectEvents: (runId) => statement(SQL.SELECT_EVENTS, runId, runId),
  selectRunsPage({ statuses = [], workflowName, limit, before, beforeId }) {
    const cursor = before === undefined ? "none" : beforeId === undefined ? "before" : "beforeId";
    const sql = SQL.selectRunsPage(statuses.length, workflowName !== undefined, cursor);
    const params: (string | number)[] = [];
    for (const status of statuses.length === 0 ? [undefined] : statuses) {
      if (status !== undefined) params.push(status);
      if (workflowName !== undefined) params.push(workflowName);
      if (before !== undefined) params.push(before);
      if (beforeId !== undefined) params.push(beforeId);
    }
    return statement(sql, ...params, limit);
  },
  countRuns: (statuses, cap) =>
    statement(SQL.countRunsByStatus(statuses.length), ...statuses.flatMap((status) => [status, status, cap])),
  requeueRun: (runId, now) => statement(SQL.REQUEUE_RUN, now, now, runId),
  deleteFailedSteps: (runId) => statement(SQL.DELETE_FAILED_STEPS, runId),
  deleteEventsOfFinishedRun: (runId) => statement(SQL.DELETE_EVENTS_OF_FINISHED_RUN, runId, runId),
  updateRunVersion: (runId, leaseId, version) => statement(SQL.UPDATE_RUN_VERSION, version, runId, leaseId),
  insertWorkflowVersion: ({ workflowName, version, shape, createdAt }) =>
    statement(SQL.INSERT_WORKFLOW_VERSION, workflowName, version, shape, createdAt),
  selectWorkflowVersions: () => statement(SQL.SELECT_WORKFLOW_VERSIONS),
  selectPurgeable: ({ finishedBefore, statuses, limit }) =>
    statement(
      SQL.selectPurgeable(statuses.length),
      ...statuses.flatMap((status) => [status, finishedBefore, finishedBefore]),
      limit,
    ),
  deleteStepsOfRuns: (runIds) => statement(SQL.DELETE_STEPS_OF_RUNS, JSON.stringify(runIds)),
  deleteEventsOfRuns: (runIds) => statement(SQL.DELETE_EVENTS_OF_RUNS, JSON.stringify(runIds)),
  deleteRuns: (seqs) => statement(SQL.DELETE_RUNS, JSON.stringify(seqs)),
  selectSchedule: (key) => statement(SQL.SELECT_SCHEDULE, key),
  // The write lock of BEGIN IMMEDIATE already keeps the row from changing.
  lockSchedule: (key) => statement(SQL.SELECT_SCHEDULE, key),
  selectSchedules: () => statement(SQL.SELECT_SCHEDULES),
  selectDueSchedules: (names, now, limit) =>
    statement(SQL.SELECT_DUE_SCHEDULES, now, JSON.stringify(names), limit),
  insertSchedule: (schedule) => statement(SQL.INSERT_SCHEDULE, ...scheduleParams(schedule)),
  upsertSchedule: (schedule) => statement(SQL.UPSERT_SCHEDULE, ...scheduleParams(schedule)),
  deleteSchedule: (key) => statement(SQL.DELETE_SCHEDULE, key),
};
