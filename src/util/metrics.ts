import {
  Histogram,
  type MetricObjectWithValues,
  type MetricValue,
  type MetricValueWithName,
  type Registry,
} from 'prom-client';

/**
 * Return the metric already registered under `name`, or make it on `registry`. Two instances of
 * a capability sharing one registry then share instruments instead of tripping prom-client's
 * duplicate-name error. Without a registry the metric is made unregistered (counts go nowhere).
 *
 * @example
 * const hits = registeredMetric(registry, 'shoal_x_total', (registers) =>
 *   new Counter({ name: 'shoal_x_total', help: 'x', registers }));
 */
export function registeredMetric<T>(
  registry: Registry | undefined,
  name: string,
  make: (registers: Registry[]) => T,
): T {
  const existing = registry?.getSingleMetric(name);
  if (existing) return existing as unknown as T;
  return make(registry ? [registry] : []);
}

type HistogramConfig<L extends string> = ConstructorParameters<typeof Histogram<L>>[0];

/** One label set's observations in a table-backed histogram. */
export interface HistogramSeries<L extends string> {
  labels: Partial<Record<L, string>>;
  count: number;
  sum: number;
  /** Per-bucket (not cumulative) counts, one slot per upper bound. */
  buckets: Float64Array;
}

/** Count one observation into `series` (bounds ascending). */
export function recordObservation<L extends string>(
  series: HistogramSeries<L>,
  bounds: readonly number[],
  value: number,
): void {
  series.count++;
  series.sum += value;
  const buckets = series.buckets;
  for (let i = 0; i < bounds.length; i++) {
    if (value <= (bounds[i] as number)) {
      buckets[i] = (buckets[i] as number) + 1;
      break;
    }
  }
}

/**
 * What the registry reads from a metric's `get()`, built from a metric's own table (prom-client's
 * typings name the shape loosely).
 */
export function exportedMetric<T>(config: { name: string; help: string }, type: string, values: T[]) {
  return {
    name: config.name,
    help: config.help,
    type,
    values,
    aggregator: 'sum',
  } as unknown as MetricObjectWithValues<MetricValue<string>> & { values: T[] };
}

/** The `get()` result of a histogram whose series live in the metric's own table. */
export function exportedHistogram<L extends string>(
  config: { name: string; help: string },
  bounds: readonly number[],
  series: Iterable<HistogramSeries<L>>,
) {
  const name = config.name;
  const values: MetricValueWithName<string>[] = [];
  for (const s of series) {
    let acc = 0;
    for (let i = 0; i < bounds.length; i++) {
      acc += s.buckets[i] as number;
      values.push({
        labels: { ...s.labels, le: bounds[i] as number },
        value: acc,
        metricName: `${name}_bucket`,
      });
    }
    values.push({ labels: { ...s.labels, le: '+Inf' }, value: s.count, metricName: `${name}_bucket` });
    values.push({ labels: s.labels, value: s.sum, metricName: `${name}_sum` });
    values.push({ labels: s.labels, value: s.count, metricName: `${name}_count` });
  }
  return exportedMetric(config, 'histogram', values) as unknown as MetricObjectWithValues<
    MetricValueWithName<L>
  >;
}

/**
 * A prom-client Histogram for hot paths: `series(labels)` returns a recorder bound to one label
 * set, and recording is a bucket search plus three additions — no label validation, hashing or
 * sorting per observation, which prom-client's `observe()` does every time. The registry reads
 * the series at scrape time through `get()`; naming, default labels and the text format stay
 * prom-client's.
 *
 * @example
 * const h = new SeriesHistogram({ name: 'x_seconds', help: 'x', labelNames: ['result'], buckets: [0.001, 0.01] });
 * const ok = h.series({ result: 'ok' });
 * ok(0.0004);
 */
export class SeriesHistogram<L extends string> extends Histogram<L> {
  // Plain (not #private) fields: the base constructor calls reset() before they exist.
  private readonly config: HistogramConfig<L>;
  private readonly bounds: number[];
  private readonly table: Map<string, HistogramSeries<L>> | undefined;

  constructor(config: HistogramConfig<L>) {
    super(config);
    this.config = config;
    this.table = new Map();
    this.bounds = [...(config.buckets ?? [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10])].sort(
      (a, b) => a - b,
    );
  }

  /** A recorder for one label set; keep it and call it per observation. */
  series(labels: Partial<Record<L, string>>): (value: number) => void {
    const key = JSON.stringify(labels);
    let s = this.table?.get(key);
    if (s === undefined) {
      s = { labels, count: 0, sum: 0, buckets: new Float64Array(this.bounds.length) };
      this.table?.set(key, s);
    }
    const series = s;
    const bounds = this.bounds;
    return (value) => recordObservation(series, bounds, value);
  }

  override async get() {
    return exportedHistogram<L>(this.config, this.bounds, this.table?.values() ?? []);
  }

  // The registry prefers this for the text format.
  getForPromString() {
    return this.get();
  }

  override reset(): void {
    super.reset();
    for (const s of this.table?.values() ?? []) {
      s.count = 0;
      s.sum = 0;
      s.buckets.fill(0);
    }
  }
}
