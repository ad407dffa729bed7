// Shared shape of a benchmark result and helpers for running the same
// measurement against several servers, interleaved, several times.
import os from 'node:os';
import { median } from './stats.mjs';

export function machine() {
  return {
    cores: os.cpus().length,
    cpu: os.cpus()[0]?.model ?? 'unknown',
    memoryGiB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    node: process.version,
    platform: `${os.type()} ${os.release()}`,
    date: new Date().toISOString(),
  };
}

/**
 * Run `once(server, runIndex)` for each server, `runs` times, interleaving
 * servers within each run so slow drift of the machine hits all alike.
 * Returns { raw: {server: [row...]}, median: {server: {field: median}} }.
 */
export async function interleaved(servers, runs, once, log = console.error) {
  const raw = Object.fromEntries(servers.map((s) => [s, []]));
  for (let r = 0; r < runs; r++) {
    for (const s of servers) {
      const row = await once(s, r);
      log(`  [${s} run ${r + 1}/${runs}] ${JSON.stringify(row)}`);
      raw[s].push(row);
    }
  }
  const med = {};
  for (const s of servers) {
    med[s] = {};
    const rows = raw[s].filter((x) => x && !x.error);
    for (const k of Object.keys(rows[0] ?? {})) if (typeof rows[0][k] === 'number') med[s][k] = median(rows.map((x) => x[k]));
    med[s].runs = rows.length;
  }
  return { raw, median: med };
}

/** A target line: value vs limit, with the direction that passes. */
export function target(what, value, op, limit, note = '') {
  const pass = !Number.isFinite(value) ? null : op === '<=' ? value <= limit : value >= limit;
  return { what, value, op, limit, pass, note };
}
