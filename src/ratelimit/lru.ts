/**
 * A bounded map that evicts the least recently used entry: the only kind of per-process state the
 * rate limiter keeps (block cache, fallback counters), so memory stays flat under key floods.
 */
export class BoundedLru<V> {
  readonly #map = new Map<string, V>();

  constructor(readonly capacity: number) {}

  get size(): number {
    return this.#map.size;
  }

  /**
   * Read and mark as recently used.
   *
   * @example
   * const lru = new BoundedLru<number>(2); lru.set('a', 1); lru.get('a'); // 1
   */
  get(key: string): V | undefined {
    const v = this.#map.get(key);
    if (v === undefined) return undefined;
    this.#map.delete(key);
    this.#map.set(key, v);
    return v;
  }

  /** Insert or replace, evicting the oldest entry when full. */
  set(key: string, value: V): void {
    if (this.capacity <= 0) return;
    this.#map.delete(key);
    if (this.#map.size >= this.capacity) {
      const oldest = this.#map.keys().next();
      if (!oldest.done) this.#map.delete(oldest.value);
    }
    this.#map.set(key, value);
  }

  delete(key: string): void {
    this.#map.delete(key);
  }

  clear(): void {
    this.#map.clear();
  }
}
