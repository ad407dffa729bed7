// Code blocks of the Markdown docs, and the small grammar test/docs.test.ts
// reads out of the shell examples (commands, and the `# …` lines that say what
// a command answers). Pure functions: no I/O besides reading the docs.
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { isDeepStrictEqual } from 'node:util';

export interface CodeBlock {
  /** Path relative to the repo root, e.g. `docs/server.md`. */
  file: string;
  /** The fence's info string, lower-cased first word (`ts`, `sh`, ''). */
  lang: string;
  /** 1-based line of the opening fence. */
  fenceLine: number;
  /** The block's lines, with the fence's indentation removed. Line i is at fenceLine + 1 + i. */
  lines: string[];
  /** The reason of a `<!-- not-tested: reason -->` comment right before the fence, else null. */
  notTested: string | null;
}

/** README.md and docs/*.md, relative to `root`, sorted. */
export function docFiles(root: string): string[] {
  const docs = readdirSync(path.join(root, 'docs'))
    .filter((f) => f.endsWith('.md'))
    .sort()
    .map((f) => `docs/${f}`);
  // The packages' own READMEs are what npm shows: their examples are tested too.
  return ['README.md', ...docs, 'packages/tidings/README.md', 'packages/tidings-server/README.md'];
}

const OPEN_RE = /^( *)(`{3,}|~{3,})\s*([^`\s]*)/;

/** Every fenced code block of a Markdown text (CommonMark fences, possibly indented inside list items). */
export function extractBlocks(file: string, text: string): CodeBlock[] {
  const src = text.split(/\r?\n/);
  const blocks: CodeBlock[] = [];
  for (let i = 0; i < src.length; i++) {
    const open = OPEN_RE.exec(src[i]!);
    if (!open) continue;
    const indent = open[1]!.length;
    const fence = open[2]!;
    const lang = open[3]!.toLowerCase();
    const lines: string[] = [];
    let j = i + 1;
    for (; j < src.length; j++) {
      const line = src[j]!;
      const t = line.trim();
      if (t.startsWith(fence[0]!.repeat(fence.length)) && /^(`+|~+)$/.test(t)) break;
      // CommonMark: strip up to `indent` spaces of the fence's indentation.
      let k = 0;
      while (k < indent && line[k] === ' ') k++;
      lines.push(line.slice(k));
    }
    let p = i - 1;
    while (p >= 0 && src[p]!.trim() === '') p--;
    const marker = p >= 0 ? /^\s*<!--\s*not-tested:\s*(.*?)\s*-->\s*$/.exec(src[p]!) : null;
    blocks.push({ file, lang, fenceLine: i + 1, lines, notTested: marker ? marker[1] || '(no reason given)' : null });
    i = j;
  }
  return blocks;
}

export function readBlocks(root: string): CodeBlock[] {
  return docFiles(root).flatMap((f) => extractBlocks(f, readFileSync(path.join(root, f), 'utf8')));
}

// ---------------------------------------------------------------- shell blocks

export interface ShellCommand {
  /** The command as written, continuation lines joined with their `\` and newline kept. */
  text: string;
  /** 1-based line in the doc where it starts. */
  line: number;
  /** The `# …` lines directly below it (no blank line between), without the `# `: what the doc says it answers. */
  outcomes: { text: string; line: number }[];
}

/**
 * Commands of a shell block. A `#` line directly below a command (or below
 * another such line) documents that command's outcome; a `#` line after a
 * blank line, or at the top, is prose about what follows.
 */
export function shellCommands(block: CodeBlock): ShellCommand[] {
  const out: ShellCommand[] = [];
  let last: ShellCommand | null = null;
  for (let i = 0; i < block.lines.length; i++) {
    const line = block.lines[i]!;
    const docLine = block.fenceLine + 1 + i;
    const t = line.trim();
    if (t === '') {
      last = null;
      continue;
    }
    if (t.startsWith('#')) {
      if (last) last.outcomes.push({ text: t.replace(/^#\s?/, ''), line: docLine });
      continue;
    }
    let text = line;
    while (/\\$/.test(text) && i + 1 < block.lines.length) text += '\n' + block.lines[++i]!;
    last = { text: text.trim(), line: docLine, outcomes: [] };
    out.push(last);
  }
  return out;
}

/** Why a shell block is not run, or null when every command in it is a `curl` call (the rule of test/docs.test.ts). */
export function notRunnableReason(block: CodeBlock): string | null {
  const cmds = shellCommands(block);
  if (cmds.length === 0) return 'no command';
  const other = cmds.find((c) => !/^curl\s/.test(c.text));
  return other ? `not an HTTP call: \`${other.text.split(/\s+/).slice(0, 2).join(' ')}\`` : null;
}

// -------------------------------------------------------- documented outcomes

/** What one `# …` line says a request answers. Only what it names is checked. */
export interface Outcome {
  status?: number;
  headers: Record<string, string>;
  /** Exact JSON body (deep-equal). */
  json?: unknown;
  /** Plain-text body (compared trimmed). */
  text?: string;
}

/**
 * Reads an outcome line, or returns null if it names nothing checkable. Forms:
 *   `{"cursor":"…"}`                                   the JSON body
 *   `200, ETag: "…", X-Poll-Interval: 5, {"messages":[]}`  status, headers, JSON body
 *   `... Preference-Applied: wait=25`                  some headers (the rest elided)
 *   `200 ok            accepting work`                  status and text body; after 2+ spaces: explanation
 */
export function parseOutcome(line: string): Outcome | null {
  let s = line.trim().replace(/^(\.\.\.|…)\s*/, '');
  const o: Outcome = { headers: {} };
  const st = /^([1-5]\d\d)\b,?/.exec(s);
  if (st) {
    o.status = Number(st[1]);
    s = s.slice(st[0].length);
  }
  const brace = s.search(/[{[]/);
  if (brace >= 0) {
    try {
      o.json = JSON.parse(s.slice(brace).trim());
      s = s.slice(0, brace);
    } catch {
      // not a JSON body: leave it to the header / text readers
    }
  }
  const headerRe = /([A-Za-z][A-Za-z0-9-]*): ("[^"]*"|[^,]+?)\s*(?:,|$)/g;
  let m: RegExpExecArray | null;
  let sawHeader = false;
  while ((m = headerRe.exec(s))) {
    o.headers[m[1]!.toLowerCase()] = m[2]!.trim();
    sawHeader = true;
  }
  if (!sawHeader && o.json === undefined && o.status !== undefined) {
    const text = s.trim().split(/\s{2,}/)[0]!.trim();
    if (text !== '') o.text = text;
  }
  if (o.status === undefined && !sawHeader && o.json === undefined) return null;
  return o;
}

export interface HttpResult {
  /** Known only when the command prints the head (`curl -i`). */
  status?: number;
  headers: Record<string, string>;
  body: string;
}

/** curl's stdout: with `-i` the status line and headers come first (1xx interim answers skipped). */
export function parseCurlOutput(stdout: string): HttpResult {
  let rest = stdout;
  for (;;) {
    const m = /^HTTP\/[\d.]+ (\d{3})[^\n]*\n/.exec(rest);
    if (!m) return { headers: {}, body: rest };
    const end = rest.search(/\r?\n\r?\n/);
    const head = end < 0 ? rest : rest.slice(0, end);
    const body = end < 0 ? '' : rest.slice(end).replace(/^\r?\n\r?\n/, '');
    const status = Number(m[1]);
    if (status >= 100 && status < 200) {
      rest = body;
      continue;
    }
    const headers: Record<string, string> = {};
    for (const h of head.split(/\r?\n/).slice(1)) {
      const i = h.indexOf(':');
      if (i > 0) headers[h.slice(0, i).trim().toLowerCase()] = h.slice(i + 1).trim();
    }
    return { status, headers, body };
  }
}

/** Mismatches between what happened and one documented outcome; empty when it matches. */
export function compareOutcome(got: HttpResult, want: Outcome): string[] {
  const bad: string[] = [];
  if (want.status !== undefined) {
    if (got.status === undefined) bad.push(`the doc states status ${want.status} but the command does not print it`);
    else if (got.status !== want.status) bad.push(`status ${got.status}, doc says ${want.status}`);
  }
  for (const [name, value] of Object.entries(want.headers)) {
    if (got.status === undefined) {
      bad.push(`the doc states header ${name} but the command does not print headers`);
      continue;
    }
    const actual = got.headers[name];
    if (actual !== value) bad.push(`${name}: ${actual === undefined ? '(absent)' : actual}, doc says ${value}`);
  }
  if (want.json !== undefined) {
    let body: unknown;
    try {
      body = JSON.parse(got.body);
    } catch {
      bad.push(`body is not JSON: ${got.body.slice(0, 200)}`);
    }
    if (body !== undefined && !isDeepStrictEqual(body, want.json)) {
      bad.push(`body ${JSON.stringify(body)}, doc says ${JSON.stringify(want.json)}`);
    }
  }
  if (want.text !== undefined && got.body.trim() !== want.text) bad.push(`body ${JSON.stringify(got.body.trim())}, doc says ${JSON.stringify(want.text)}`);
  return bad;
}

/** For a command the doc gives no outcome for: it must not be an error answer. */
export function errorAnswer(got: HttpResult): string | null {
  if (got.status !== undefined && got.status >= 400) return `status ${got.status}: ${got.body.slice(0, 200)}`;
  try {
    const j = JSON.parse(got.body) as { error?: unknown };
    if (j && typeof j === 'object' && 'error' in j) return `error answer: ${got.body.slice(0, 200)}`;
  } catch {
    // not JSON: fine
  }
  return null;
}
