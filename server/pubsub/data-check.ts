// What published `data` must be, checked once before anything is stored, so
// every bus accepts exactly the same events (the Redis bus decodes the JSON in
// its script with cjson, which refuses what the memory bus would keep: nesting
// past 1000 levels, strings that are not Unicode). Pure.

/**
 * Null when `data` is fine; else why not. `maxDepth` counts nested arrays and
 * objects (a scalar is depth 0, `[]` depth 1). Every string, keys included,
 * must be well-formed UTF-16: a lone surrogate ("\ud800") is valid JSON text
 * but no Unicode text, cannot be encoded as UTF-8, and other parsers refuse it.
 * Iterative, so a hostile depth costs no stack.
 */
export function dataProblem(data: unknown, maxDepth: number): string | null {
  const stack: unknown[] = [data];
  const depths: number[] = [0];
  while (stack.length > 0) {
    const v = stack.pop();
    const d = depths.pop()!;
    if (typeof v === 'string') {
      if (!wellFormed(v)) return 'data contains a lone surrogate (text that is not Unicode)';
      continue;
    }
    if (typeof v !== 'object' || v === null) continue;
    if (d + 1 > maxDepth) return `data nests deeper than ${maxDepth} levels`;
    if (Array.isArray(v)) {
      for (const x of v) { stack.push(x); depths.push(d + 1); }
    } else {
      for (const k of Object.keys(v)) {
        if (!wellFormed(k)) return 'data contains a lone surrogate (text that is not Unicode)';
        stack.push((v as Record<string, unknown>)[k]);
        depths.push(d + 1);
      }
    }
  }
  return null;
}

/** String.prototype.isWellFormed (ES2024, Node >= 20; our TS lib is older). */
const isWellFormed = (String.prototype as unknown as { isWellFormed(this: string): boolean }).isWellFormed;
function wellFormed(s: string): boolean {
  return isWellFormed.call(s);
}
