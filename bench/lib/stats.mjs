// Small, dependency-free statistics for benchmark results.

export function median(xs) {
  const v = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return NaN;
  const m = v.length >> 1;
  return v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
}

/** Nearest-rank percentile (p in 0..100). */
export function percentile(xs, p) {
  const v = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return NaN;
  const rank = Math.min(v.length - 1, Math.max(0, Math.ceil((p / 100) * v.length) - 1));
  return v[rank];
}

/** Median of each numeric field over a list of result objects with the same shape. */
export function medianOf(rows) {
  const out = {};
  for (const k of Object.keys(rows[0] ?? {})) {
    if (typeof rows[0][k] === 'number') out[k] = median(rows.map((r) => r[k]));
  }
  return out;
}

export const nowMs = () => performance.timeOrigin + performance.now();

export function round(x, digits = 2) {
  if (!Number.isFinite(x)) return x;
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}
