/**
 * Group commit: concurrent writes of different runs share one `BEGIN IMMEDIATE … COMMIT`.
 *
 * Consecutive steps of one run can never share a transaction (a step's result is committed
 * before the next step starts), but the steps of the runs in flight at the same time can. A
 * commit is most of what a small write transaction costs in SQLite, so committing the writes of
 * 25 runs together costs little more than committing one.
 *
 * @module
 */

import type { SqlConnection } from "./driver.ts";

/**
 * One caller's part of a group transaction: its statements, run on the group's connection. It
 * must do its own check-then-write (e.g. an `UPDATE … WHERE lease_id = ?` whose change count is
 * the fence) and answer with its own result, so that a write that finds its check failed changes
 * nothing and leaves the other writes of the group alone. It must not throw for anything but a
 * driver failure: a throw rolls back the whole group.
 */
export type GroupedWrite<T> = (connection: SqlConnection) => Promise<T>;

/**
 * Runs `body` inside one write transaction and commits it, retrying the whole transaction where
 * that is safe (busy); rejects if it did not commit.
 */
export type TransactionRunner = (body: (connection: SqlConnection) => Promise<void>) => Promise<void>;

interface Entry {
  readonly write: GroupedWrite<unknown>;
  readonly resolve: (value: unknown) => void;
  readonly reject: (error: unknown) => void;
}

/**
 * How many microtask turns the flusher waits, at most, for the callers it has just answered to
 * submit their next write. A trivial step of the engine goes from its commit back to its next
 * commit in 6 turns (measured on Deno, Node and Bun), an async handler in a few more; a step that
 * waits on I/O does not come back in any number of turns, and then the wait costs microseconds.
 */
const LINGER_TURNS = 48;

/**
 * A queue of writes drained by one flusher, one group transaction at a time. Each write's promise
 * settles only after the transaction that carried it has committed (with the write's own result)
 * or has failed (with the group's error, for every write in it, unless the failure is one to retry
 * each write alone).
 *
 * How groups form. A submitted write waits one microtask, so that writes submitted in the same
 * turn join it; then the flusher runs the group. Writes submitted while a group transaction is in
 * progress wait for the next one. With an async driver (a network database) that alone forms
 * groups: a transaction takes real time, during which the other runs' writes queue up. With a
 * synchronous SQLite library behind an async interface it does not: every statement finishes
 * before its promise is even returned, so a transaction is over after a handful of microtask
 * turns, before the runs just answered have come back with their next step. So after answering a
 * group, the flusher waits up to {@linkcode LINGER_TURNS} microtask turns, and only until as many
 * writes are queued as it has just answered: a microtask-scale deferral that lets those runs run
 * their next (trivial) step and join the next group, instead of the first of them committing
 * alone. An idle storage waits a single microtask. FIFO order is kept within and across groups,
 * so one caller's writes are applied in the order it submitted them.
 *
 * @example Two writes, one transaction (internal: not exported from the package)
 * ```ts ignore
 * const log: string[] = [];
 * const commit = new GroupCommit(async (body) => {
 *   log.push("BEGIN");
 *   await body({
 *     query: () => Promise.resolve([]),
 *     execute: (s) => (log.push(s.sql), Promise.resolve({ changes: 1 })),
 *   });
 *   log.push("COMMIT");
 * });
 * const write = (sql: string) => async (c: SqlConnection) => (await c.execute({ sql, params: [] })).changes;
 * await Promise.all([commit.submit(write("UPDATE a")), commit.submit(write("UPDATE b"))]);
 * console.log(log); // ["BEGIN", "UPDATE a", "UPDATE b", "COMMIT"]
 * ```
 */
export class GroupCommit {
  readonly #transaction: TransactionRunner;
  readonly #retryAlone: (error: unknown) => boolean;
  #queue: Entry[] = [];
  #flushing = false;

  /**
   * @param transaction Runs one group's writes in one transaction and commits it.
   * @param retryAlone Tells a failure after which each write of the group is tried again in a
   *   transaction of its own (default: none is). For busy failures: the transaction runner retries
   *   a busy group as a whole, but a group of n writes sends n times the statements of one, so
   *   where statements fail at random it keeps failing where each write alone would succeed.
   */
  constructor(transaction: TransactionRunner, retryAlone: (error: unknown) => boolean = () => false) {
    this.#transaction = transaction;
    this.#retryAlone = retryAlone;
  }

  /**
   * Queues a write for the next group transaction.
   *
   * @param write The write's statements and its check.
   * @returns The write's result, once its group has committed.
   * @throws What the write's transaction failed with (every write of the group gets it), in which
   *   case none of the group's writes was applied; after a failure that `retryAlone` accepts, what
   *   the write's own transaction failed with.
   */
  submit<T>(write: GroupedWrite<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.#queue.push({ write, resolve: resolve as (value: unknown) => void, reject });
      if (!this.#flushing) {
        this.#flushing = true;
        void this.#flush();
      }
    });
  }

  async #flush(): Promise<void> {
    let answered = 0;
    try {
      for (;;) {
        // Always at least one turn, so that writes submitted in the same turn share the group.
        await null;
        for (let turn = 1; turn < LINGER_TURNS && this.#queue.length < answered; turn++) await null;
        const group = this.#queue;
        if (group.length === 0) return;
        this.#queue = [];
        answered = group.length;
        await this.#commit(group);
      }
    } finally {
      this.#flushing = false;
    }
  }

  /** Runs a group in one transaction and settles each of its writes; never rejects. */
  async #commit(group: readonly Entry[]): Promise<void> {
    const results: unknown[] = new Array(group.length);
    try {
      // A retried transaction (busy) runs every write again, from the start.
      await this.#transaction(async (connection) => {
        for (let i = 0; i < group.length; i++) results[i] = await group[i]!.write(connection);
      });
    } catch (error) {
      if (group.length > 1 && this.#retryAlone(error)) {
        // In order, so that one caller's writes still land in the order it submitted them.
        for (const entry of group) await this.#commit([entry]);
      } else {
        for (const entry of group) entry.reject(error);
      }
      return;
    }
    for (let i = 0; i < group.length; i++) group[i]!.resolve(results[i]);
  }
}
