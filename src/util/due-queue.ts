/**
 * Items that fall due one fixed period after they are added, driven by one timer.
 *
 * Every item shares the same period, so insertion order is due order: the head of the set is
 * always the next to fall due and removing a finished item is a Set delete. One timer per owner
 * replaces a setTimeout per item, which costs a timer-list insert and a native re-arm each time.
 */
export class DueQueue<T extends { due: number }> {
  readonly #items = new Set<T>();
  readonly #onDue: (item: T, now: number) => void;
  #timer: NodeJS.Timeout | undefined;

  /**
   * `onDue` receives each item once it is due, already removed; it may `add` the item again
   * with a later `due`.
   *
   * @example
   * const q = new DueQueue<{ due: number; expire(): void }>((item) => item.expire());
   * q.add({ due: performance.now() + 50, expire: () => console.log('timed out') });
   */
  constructor(onDue: (item: T, now: number) => void) {
    this.#onDue = onDue;
  }

  /** Add an item whose `due` (performance.now() time) is not before any item already queued. */
  add(item: T): void {
    this.#items.add(item);
    if (this.#timer === undefined) this.#arm();
  }

  /** Forget an item (a no-op when it already fell due or was never added). */
  delete(item: T): void {
    this.#items.delete(item);
  }

  #arm(): void {
    const head = this.#items.values().next();
    if (head.done) {
      this.#timer = undefined;
      return;
    }
    this.#timer = setTimeout(this.#fire, Math.max(0, head.value.due - performance.now()));
    this.#timer.unref();
  }

  readonly #fire = (): void => {
    const now = performance.now();
    for (const item of this.#items) {
      if (item.due > now) break;
      this.#items.delete(item);
      this.#onDue(item, now);
    }
    this.#arm();
  };
}
