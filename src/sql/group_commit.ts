/**
 * Group commit: concurrent writes of different runs share one `BEGIN IMMEDIATE … COMMIT` (on
 * PostgreSQL, one statement).
 *
 * Consecutive steps of one run can never share a transaction (a step's result is committed
 * before the next step starts), but the steps of the runs in flight at the same time can. A
 * commit is most of what a small write transaction costs in SQLite, so committing the writes of
 * 25 runs together costs little more than committing one.
 *
 * @module
 */

/**
 * Commits one group of writes, in one transaction or (where the database makes it atomic) one
 * statement, and answers each write with its own result, in order. Each write must carry its own
 * check (e.g. an `UPDATE … WHERE lease_id = ?` whose change count is the fence), so that a write
 * whose check fails changes nothing and leaves the other writes of the group alone. It rejects
 * only for a driver failure, after which none of the group's writes was applied.
 */
export type GroupWriter<W, R> = (group: readonly W[]) => Promise<R[]>;

interface Entry<W, R> {
  readonly write: W;
  readonly resolve: (value: R) => void;
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
 * const commit = new GroupCommit(async (group: readonly string[]) => {
 *   log.push("BEGIN", ...group, "COMMIT");
 *   return group.map(() => true);
 * });
 * await Promise.all([commit.submit("UPDATE a"), commit.submit("UPDATE b")]);
 * console.log(log); // ["BEGIN", "UPDATE a", "UPDATE b", "COMMIT"]
 * ```
 */
export class GroupCommit<W, R> {
  readonly #commitGroup: GroupWriter<W, R>;
  readonly #retryAlone: (error: unknown) => boolean;
  #queue: Entry<W, R>[] = [];
  #flushing = false;

  /**
   * @param commitGroup Commits one group's writes (retrying where that is safe, such as busy).
   * @param retryAlone Tells a failure after which each write of the group is tried again in a
   *   transaction of its own (default: none is). For busy failures: the transaction runner retries
   *   a busy group as a whole, but a group of n writes sends n times the statements of one, so
   *   where statements fail at random it keeps failing where each write alone would succeed.
   */
  constructor(commitGroup: GroupWriter<W, R>, retryAlone: (error: unknown) => boolean = () => false) {
    this.#commitGroup = commitGroup;
    this.#retryAlone = retryAlone;
  }

  /**
   * Queues a write for the next group transaction.
   *
   * @param write The write, as the group writer takes it.
   * @returns The write's result, once its group has committed.
   * @throws What the write's transaction failed with (every write of the group gets it), in which
   *   case none of the group's writes was applied; after a failure that `retryAlone` accepts, what
   *   the write's own transaction failed with.
   */
  submit(write: W): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      this.#queue.push({ write, resolve, reject });
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
  async #commit(group: readonly Entry<W, R>[]): Promise<void> {
    let results: R[];
    try {
      results = await this.#commitGroup(group.map((entry) => entry.write));
    } catch (error) {
      if (group.length > 1 && this.#retryAlone(error)) {
        // In order, so that one caller's writes still land in the order it submitted them.
        for (const entry of group) await this.#commit([entry]);
      } else {
        for (const entry of group) entry.reject(error);
      }
      return;
    }
    for (let i = 0; i < group.length; i++) group[i]!.resolve(results[i]!);
  }
}
