/**
 * A first-in, first-out asynchronous lock, for drivers that lend a single connection.
 *
 * @module
 */

/**
 * A FIFO lock: {@linkcode FifoMutex.lock} resolves for one holder at a time, in the order the
 * calls were made. Uncontended, it resolves without queueing anything.
 *
 * @example Serialise two tasks
 * ```ts
 * const mutex = new FifoMutex();
 * const order: string[] = [];
 * await Promise.all(["a", "b"].map(async (name) => {
 *   await mutex.lock();
 *   try {
 *     order.push(name);
 *     await new Promise((resolve) => setTimeout(resolve, 1));
 *   } finally {
 *     mutex.unlock();
 *   }
 * }));
 * console.log(order); // ["a", "b"]
 * ```
 */
export class FifoMutex {
  #locked = false;
  #waiters: (() => void)[] = [];
  #head = 0;

  /**
   * Waits until the caller holds the lock.
   *
   * @returns When the lock is held; the holder must call {@linkcode FifoMutex.unlock} once.
   */
  lock(): Promise<void> {
    if (!this.#locked) {
      this.#locked = true;
      return Promise.resolve();
    }
    return new Promise((resolve) => this.#waiters.push(resolve));
  }

  /** Hands the lock to the longest waiter, or frees it. */
  unlock(): void {
    if (this.#head < this.#waiters.length) {
      const next = this.#waiters[this.#head]!;
      this.#waiters[this.#head++] = noop;
      // Compact only now and then, so that a long queue costs O(1) per hand-over.
      if (this.#head > 64 && this.#head * 2 > this.#waiters.length) {
        this.#waiters = this.#waiters.slice(this.#head);
        this.#head = 0;
      }
      next();
      return;
    }
    this.#waiters.length = 0;
    this.#head = 0;
    this.#locked = false;
  }
}

function noop(): void {}
