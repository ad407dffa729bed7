/** The sessionStorage key that says this tab's client fell back to polling from `url` (docs/sdk.md, "Fallback"). */
export const fellBack = (url: string) => 'tidings:ws:' + url;

/** sessionStorage, guarded: it throws in sandboxed iframes and with storage disabled. */
export function session(key: string, value?: string | null): string | null | undefined {
  try {
    const s = sessionStorage;
    if (value === undefined) return s.getItem(key);
    value === null ? s.removeItem(key) : s.setItem(key, value);
  } catch {
    /* storage unavailable: behave as a fresh session */
  }
}
