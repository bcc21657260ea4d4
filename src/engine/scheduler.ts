/**
 * Schedules: registering recurring runs, and firing their due slots from the worker loop and
 * `tick()`. Every engine with the workflow registered fires; the storage's compare-and-set on
 * `nextRunAt` lets exactly one of them create each slot's run.
 *
 * @module
 */

import { defaultScheduleKey } from "../schedule/key.ts";
import {
  decodeRecurrence,
  type Recurrence,
  type ResolvedRecurrence,
  resolveRecurrence,
  type ScheduleRecurrence,
} from "../schedule/recurrence.ts";
import type { ScheduleRecord } from "../storage/adapter.ts";
import { decodeValue } from "../storage/codec.ts";
import type { AnyWorkflow, WorkflowInput } from "../workflow/workflow.ts";
import type { WorkflowNamed } from "./engine.ts";
import { checkName } from "../names.ts";
import { checkOptionKeys, type OptionKeys } from "../option_keys.ts";
import { optionalKey, registeredWorkflow, storableValue } from "./inputs.ts";
import type { ResolvedEngineOptions } from "./options.ts";
import { newRunId } from "./run_id.ts";

/**
 * Options of `engine.schedule()`.
 *
 * @example Name the schedule, so that registering it at every start updates it in place
 * ```ts ignore
 * await engine.schedule("report", { team: "sales" }, { cron: "0 9 * * 1-5" }, { key: "sales-report" });
 * ```
 */
export interface ScheduleOptions {
  /**
   * The schedule's key: registering the same key again replaces the schedule's workflow and input,
   * and keeps its cadence unless the recurrence changed. Default: derived from the workflow, the
   * recurrence and the input, so registering the same thing twice is one schedule.
   */
  readonly key?: string;
}

const SCHEDULE_OPTION_KEYS: OptionKeys<ScheduleOptions> = { key: true };

/**
 * A schedule as `engine.listSchedules()` reports it, with its input decoded. Times are ms since the
 * epoch, as in `RunInfo`.
 *
 * @example Register a schedule, fire its first slot, and read it back
 * ```ts
 * import { createEngine, createWorkflow, type StandardSchemaV1 } from "@reflow/core";
 * import { MemoryStorage } from "@reflow/core/test";
 *
 * const anything: StandardSchemaV1<{ team: string }> = {
 *   "~standard": { version: 1, vendor: "example", validate: (value) => ({ value: value as { team: string } }) },
 * };
 * const report = createWorkflow({ name: "report", input: anything }).step("send", ({ input }) => input.team);
 *
 * let clock = Date.parse("2025-01-06T08:00:00Z"); // a Monday
 * await using engine = createEngine({ storage: new MemoryStorage(), workflows: [report], now: () => clock });
 * await engine.schedule("report", { team: "sales" }, { cron: "0 9 * * 1-5" }, { key: "sales-report" });
 * clock = Date.parse("2025-01-06T09:00:00Z");
 * await engine.tick(); // creates the 09:00 run, then runs it
 * const [info] = await engine.listSchedules();
 * console.log(info?.recurrence, new Date(info?.nextRunAt ?? 0).toISOString());
 * // { cron: "0 9 * * 1-5" } 2025-01-07T09:00:00.000Z
 * ```
 */
export interface ScheduleInfo {
  /** The schedule's key. */
  readonly key: string;
  /** The workflow each slot runs (named `workflow`, as in `listRuns({ workflow })`). */
  readonly workflow: string;
  /** The input each slot's run gets. */
  readonly input: unknown;
  /** How often it fires. */
  readonly recurrence: ScheduleRecurrence;
  /** The interval in ms of an `every` schedule, else null (reflow-ts's `intervalMs`). */
  readonly intervalMs: number | null;
  /** The expression of a `cron` schedule, else null (as reflow-ts has it). */
  readonly cron: string | null;
  /** The next slot, ms since the epoch. */
  readonly nextRunAt: number;
  /** The slot of the last run it created, or null. */
  readonly lastRunAt: number | null;
  /** The id of the last run it created, or null. */
  readonly lastRunId: string | null;
  /** When it was first registered, ms since the epoch. */
  readonly createdAt: number;
  /** When it last changed (registered again, or fired), ms since the epoch. */
  readonly updatedAt: number;
}

/** The schedule methods of an engine. */
export interface ScheduleMethods<W extends AnyWorkflow = AnyWorkflow> {
  /**
   * Registers a recurring run of a workflow: at every slot of `recurrence`, one run with `input` is
   * created, by whichever engine with the workflow registered gets there first (`start()` or
   * `tick()`). Slots missed while no engine ran are skipped, not made up: one run, then the next
   * slot after now. Each slot's run has idempotency key `schedule:<key>:<slot>`.
   *
   * @example Every weekday at 09:00 UTC, and every five minutes
   * ```ts
   * import { createEngine, createWorkflow } from "@reflow/core";
   * import { MemoryStorage } from "@reflow/core/test";
   * import { z } from "zod";
   *
   * const report = createWorkflow({ name: "report", input: z.object({ team: z.string() }) })
   *   .step("build", ({ input }) => `report for ${input.team}`);
   *
   * await using engine = createEngine({ storage: new MemoryStorage(), workflows: [report] });
   * await engine.schedule("report", { team: "sales" }, { cron: "0 9 * * 1-5" }, { key: "sales-report" });
   * const key = await engine.schedule("report", { team: "ops" }, { every: "5m" });
   * console.log(key.startsWith("report:")); // true: a key derived from the workflow, recurrence and input
   * ```
   *
   * @param name A registered workflow's name.
   * @param input The input of every run; validated now by the workflow's schema.
   * @param recurrence ms, `{ every: Duration }` or `{ cron: expression }` (UTC).
   * @param options The key, if not the default.
   * @returns The schedule's key.
   * @throws {WorkflowNotFoundError} For an unknown name.
   * @throws {ConfigError} On a bad recurrence (field `recurrence`, or `cron.minute` etc.) or key (`key`).
   * @throws {ValidationError} When the schema rejects the input.
   * @throws {SerializationError} When the validated input cannot be stored.
   */
  schedule<N extends W["name"]>(
    name: N,
    input: WorkflowInput<WorkflowNamed<W, N>>,
    recurrence: Recurrence,
    options?: ScheduleOptions,
  ): Promise<string>;

  /**
   * Deletes a schedule. Runs it created are kept.
   *
   * @example Stop a schedule
   * ```ts
   * import { createEngine, createWorkflow } from "@reflow/core";
   * import { MemoryStorage } from "@reflow/core/test";
   * import { z } from "zod";
   *
   * const report = createWorkflow({ name: "report", input: z.object({ team: z.string() }) })
   *   .step("build", ({ input }) => `report for ${input.team}`);
   *
   * await using engine = createEngine({ storage: new MemoryStorage(), workflows: [report] });
   * await engine.schedule("report", { team: "sales" }, { every: "1h" }, { key: "sales-report" });
   * console.log(await engine.unschedule("sales-report")); // true
   * console.log(await engine.unschedule("sales-report")); // false
   * ```
   *
   * @param key The schedule's key.
   * @returns Whether it existed.
   */
  unschedule(key: string): Promise<boolean>;

  /**
   * Reads every schedule in storage (of any workflow), ordered by key.
   *
   * @example List what is scheduled
   * ```ts
   * import { createEngine, createWorkflow } from "@reflow/core";
   * import { MemoryStorage } from "@reflow/core/test";
   * import { z } from "zod";
   *
   * const report = createWorkflow({ name: "report", input: z.object({ team: z.string() }) })
   *   .step("build", ({ input }) => `report for ${input.team}`);
   *
   * await using engine = createEngine({ storage: new MemoryStorage(), workflows: [report] });
   * await engine.schedule("report", { team: "sales" }, { cron: "0 9 * * 1-5" }, { key: "sales-report" });
   * for (const schedule of await engine.listSchedules()) {
   *   console.log(schedule.key, schedule.workflow, schedule.recurrence, new Date(schedule.nextRunAt)); // sales-report report { cron: "0 9 * * 1-5" } …
   * }
   * ```
   *
   * @returns The schedules.
   */
  listSchedules(): Promise<ScheduleInfo[]>;
}

/** What the scheduler needs from its engine. */
export interface SchedulerHost {
  readonly options: ResolvedEngineOptions;
  /** Initialises storage (once). */
  initialize(): Promise<void>;
  /** Wakes the worker loop. */
  notify(): void;
  /** Reports a background failure to `onError`. */
  reportError(error: unknown, operation: string): void;
}

/** Due schedules fired per storage read; more are fired in the next round, which comes at once. */
const BATCH = 100;
/** The latest time a `Date` can hold: as `now` of `dueSchedules`, it finds the earliest schedule. */
const FAR_FUTURE = 8.64e15;

/** Registers schedules and fires their due slots for one engine. */
export class Scheduler {
  readonly #host: SchedulerHost;
  readonly #recurrences = new Map<string, ResolvedRecurrence>();
  /** Schedules whose stored recurrence cannot be read: reported once, then left alone. */
  readonly #broken = new Set<string>();
  /** The earliest `nextRunAt` of this engine's workflows, as last read. */
  #earliest = Infinity;
  /** When the worker loop should look at storage again even if nothing is known to be due. */
  #refreshAt = -Infinity;

  constructor(host: SchedulerHost) {
    this.#host = host;
  }

  async schedule(
    name: string,
    input: unknown,
    recurrence: unknown,
    options?: ScheduleOptions,
  ): Promise<string> {
    const { workflows, storage, now } = this.#host.options;
    const workflow = registeredWorkflow(workflows, name);
    const resolved = resolveRecurrence(recurrence);
    const key = optionalKey(
      checkOptionKeys(options, SCHEDULE_OPTION_KEYS, undefined, "schedule options")?.key,
      "key",
    );
    const { encoded } = await storableValue(workflow.inputSchema, input, `input for workflow "${name}"`);
    const scheduleKey = key ?? await defaultScheduleKey(name, resolved.text, encoded);
    await this.#host.initialize();
    const time = now();
    const { schedule } = await storage.upsertSchedule({
      key: scheduleKey,
      workflowName: name,
      input: encoded,
      recurrence: resolved.text,
      nextRunAt: resolved.first(time),
      now: time,
    });
    this.#broken.delete(scheduleKey);
    if (schedule.nextRunAt < this.#earliest) this.#earliest = schedule.nextRunAt;
    this.#host.notify();
    return scheduleKey;
  }

  async unschedule(key: string): Promise<boolean> {
    checkName(key, "key", " to unschedule");
    await this.#host.initialize();
    return await this.#host.options.storage.deleteSchedule(key);
  }

  async list(): Promise<ScheduleInfo[]> {
    await this.#host.initialize();
    const records = await this.#host.options.storage.listSchedules();
    return records.map((record) => toScheduleInfo(record, this.#recurrence(record.recurrence)));
  }

  /**
   * The time the worker loop should next call {@linkcode Scheduler.fireIfDue}: the earliest known
   * slot, or the next poll, which notices schedules other processes registered.
   */
  wakeAt(): number {
    return Math.min(this.#earliest, this.#refreshAt);
  }

  /** Fires due slots if one is known to be due or a poll is due; for the worker loop. */
  async fireIfDue(pollIntervalMs: number): Promise<void> {
    const now = this.#host.options.now();
    if (now < this.wakeAt()) return;
    this.#refreshAt = now + pollIntervalMs;
    await this.fire(pollIntervalMs);
  }

  /**
   * Fires every due slot of this engine's workflows once, then reads the earliest slot to come.
   * Never throws: storage failures go to `onError`, and the next attempt waits for the next poll so
   * that a failing database is not hammered.
   *
   * @param retryInMs How long to wait before trying again after a failure.
   * @returns How many runs were created.
   */
  async fire(retryInMs: number): Promise<number> {
    const { storage, workflowNames, now } = this.#host.options;
    if (workflowNames.length === 0) return 0;
    let created = 0;
    const time = now();
    try {
      const due = await storage.dueSchedules(workflowNames, time, BATCH + this.#broken.size);
      for (const schedule of due) {
        if (this.#broken.has(schedule.key)) continue;
        try {
          if (await this.#fireOne(schedule, time)) created++;
        } catch (error) {
          this.#host.reportError(error, "claimScheduleSlot");
        }
      }
      const upcoming = await storage.dueSchedules(workflowNames, FAR_FUTURE, this.#broken.size + 1);
      this.#earliest = upcoming.find((schedule) => !this.#broken.has(schedule.key))?.nextRunAt ?? Infinity;
    } catch (error) {
      this.#host.reportError(error, "dueSchedules");
      this.#earliest = Infinity;
      this.#refreshAt = time + retryInMs;
    }
    if (created > 0) this.#host.notify();
    return created;
  }

  /** Claims one due slot; false when another engine had it, or the schedule cannot be read. */
  async #fireOne(schedule: ScheduleRecord, now: number): Promise<boolean> {
    let recurrence: ResolvedRecurrence;
    try {
      recurrence = this.#recurrence(schedule.recurrence);
    } catch (error) {
      // Firing it again would fail again, in a loop; it waits until it is registered anew.
      this.#broken.add(schedule.key);
      this.#host.reportError(error, "dueSchedules");
      return false;
    }
    const slot = schedule.nextRunAt;
    const result = await this.#host.options.storage.claimScheduleSlot(
      schedule.key,
      slot,
      recurrence.following(slot, now),
      {
        id: newRunId(),
        workflowName: schedule.workflowName,
        // Slots start the newest registered version, as enqueue does by default.
        workflowVersion: this.#host.options.workflows.get(schedule.workflowName)?.version ?? null,
        input: schedule.input,
        idempotencyKey: `schedule:${schedule.key}:${slot}`,
        createdAt: now,
      },
    );
    return result?.created ?? false;
  }

  #recurrence(text: string): ResolvedRecurrence {
    let resolved = this.#recurrences.get(text);
    if (resolved === undefined) {
      resolved = decodeRecurrence(text);
      this.#recurrences.set(text, resolved);
    }
    return resolved;
  }
}

/** A stored schedule as `listSchedules()` reports it, with its input decoded. */
export function toScheduleInfo(record: ScheduleRecord, recurrence: ResolvedRecurrence): ScheduleInfo {
  const info = recurrence.info;
  return {
    key: record.key,
    workflow: record.workflowName,
    input: decodeValue(record.input),
    recurrence: { ...info },
    intervalMs: "every" in info ? info.every : null,
    cron: "cron" in info ? info.cron : null,
    nextRunAt: record.nextRunAt,
    lastRunAt: record.lastRunAt,
    lastRunId: record.lastRunId,
    createdAt: record.createdAt,
    updatedAt: record.updatedAt,
  };
}
