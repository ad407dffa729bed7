// The examples in README.md and docs/*.md, tested ("Docs say how to use it,
// with examples that are tested").
//
// What is checked:
// - Every ```ts / ```js block (also `typescript`, `javascript`) is compiled with
//   the TypeScript compiler API, strict mode, each block as its own ES module,
//   `'tidings'` resolved to src/index.ts. Application functions a snippet calls
//   without defining (`showMail`, `render`, …) get a `declare` prelude
//   (test/support/docs-typecheck.ts). A failure names the doc's file:line:col.
// - Every ```sh / ```bash block whose every command starts with `curl` is run,
//   command by command in document order, with `bash -o pipefail -c`, against
//   one real server per doc file (startTestServer). Each command must exit 0.
//   Substitutions, nothing else: `http://127.0.0.1:8080` / `localhost:8080`
//   become the test server's URL; `$TIDINGS_PUBLISHER_KEY` and `$PK` are the
//   publisher key and `$TOKEN` a subscriber token for every channel the doc
//   polls, all passed as environment variables.
// - `# …` lines directly below a command (no blank line between) state what it
//   answers: a JSON body, `STATUS, Header: value, …, {json}`, `... Header: value`,
//   or `STATUS text   explanation` (parseOutcome in test/support/docs-blocks.ts).
//   Several such lines are alternatives: one must match. What a line names
//   (status, headers, body) must match exactly; a line that names nothing
//   checkable fails the test. A command with no such line must not get an
//   error answer (status >= 400 or a `{"error":…}` body).
//
// Determinism: the docs' example cursors come from a server whose in-memory bus
// had the epoch `mid0x1k7ab`, so the test bus is pinned to it and the documented
// cursors and ETags are compared exactly. The event-loop lag the server reads
// for its adaptive X-Poll-Interval is pinned to 0 (a shared CI machine must not
// turn the documented `X-Poll-Interval: 5` into 10). A long-poll the server
// holds is woken by publishing one event to its first channel, as the doc says
// ("answered 200 the moment an event arrives"), instead of waiting 25 s.
//
// Skipped, by rule:
// - Shell blocks with any command that is not `curl` (npm, npx, export, node,
//   redis-cli…): they build, install or start servers. Listed as skipped tests.
// - Blocks of other languages (html, plain ``` diagrams and Redis commands): not code we can run or type.
// - A block opted out with `<!-- not-tested: reason -->` on the line before its fence.
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULTS } from '../server/config.js';
import { createMetrics, type Metrics } from '../server/metrics.js';
import { MemoryBus } from '../server/pubsub/memory-bus.js';
import { TEST_PUBLISHER_KEY } from './support/context.js';
import { startTestServer, type TestServer } from './support/server.js';
import {
  compareOutcome, errorAnswer, extractBlocks, notRunnableReason, parseCurlOutput, parseOutcome, readBlocks, shellCommands,
  type CodeBlock, type ShellCommand,
} from './support/docs-blocks.js';
import { typecheckBlocks, type TypecheckOutcome } from './support/docs-typecheck.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const SDK_ENTRY = path.join(ROOT, 'src', 'index.ts');
/** The epoch of the server the docs' example cursors were taken from. */
const DOC_EPOCH = 'mid0x1k7ab';
const DOC_HOST_RE = /(?:https?:\/\/)?(?:127\.0\.0\.1|localhost):8080/g;

const blocks = readBlocks(ROOT);
const TS_LANGS = new Set(['ts', 'typescript', 'tsx', 'js', 'javascript']);
const SH_LANGS = new Set(['sh', 'bash', 'shell']);
const tsBlocks = blocks.filter((b) => TS_LANGS.has(b.lang));
const shBlocks = blocks.filter((b) => SH_LANGS.has(b.lang));
const where = (b: CodeBlock) => `${b.file}:${b.fenceLine}`;

function steadyMetrics(): Metrics {
  return { ...createMetrics(), eventLoopLagMs: () => 0 };
}

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function bash(command: string, env: Record<string, string>): Promise<Run> {
  return new Promise((resolve) => {
    execFile('bash', ['-o', 'pipefail', '-c', command], { env, timeout: 10_000, maxBuffer: 4 << 20 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
      resolve({ code, stdout, stderr: err && !stderr ? String(err.message) : stderr });
    });
  });
}

async function heldPolls(srv: TestServer): Promise<number> {
  const m = await srv.ctx.metrics.heldPolls.get();
  return m.values[0]?.value ?? 0;
}

/** Runs one documented command; meanwhile wakes a long-poll the server holds by publishing to its first channel. */
async function runCommand(cmd: ShellCommand, srv: TestServer, env: Record<string, string>): Promise<Run> {
  const command = cmd.text.replace(DOC_HOST_RE, srv.url);
  let done = false;
  const firstChannel = /[?&]channels=([A-Za-z0-9:_.\-]+)/.exec(command)?.[1];
  const waker = (async () => {
    while (!done && firstChannel) {
      if ((await heldPolls(srv)) > 0) {
        await srv.publish(firstChannel, 'woken by test/docs.test.ts');
        return;
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  })();
  try {
    return await bash(command, env);
  } finally {
    done = true;
    await waker;
  }
}

function checkCommand(cmd: ShellCommand, run: Run): void {
  const at = `${cmd.text}\n(exit ${run.code})\nstdout: ${run.stdout}\nstderr: ${run.stderr}`;
  expect(run.code, `exit code of\n${at}`).toBe(0);
  const got = parseCurlOutput(run.stdout);
  if (cmd.outcomes.length === 0) {
    expect(errorAnswer(got), `no outcome documented, so no error expected:\n${at}`).toBeNull();
    return;
  }
  const tried: string[] = [];
  for (const o of cmd.outcomes) {
    const want = parseOutcome(o.text);
    if (want === null) throw new Error(`line ${o.line}: "# ${o.text}" states no status, header or body the test can check`);
    const bad = compareOutcome(got, want);
    if (bad.length === 0) return;
    tried.push(`line ${o.line} "# ${o.text}": ${bad.join('; ')}`);
  }
  throw new Error(`the answer matches none of the documented outcomes:\n${tried.join('\n')}\n\n${at}`);
}

describe('shell examples (curl against a real server)', () => {
  for (const file of [...new Set(shBlocks.map((b) => b.file))]) {
    describe(file, () => {
      const runnable = shBlocks.filter((b) => b.file === file && !b.notTested && notRunnableReason(b) === null);
      let srv: TestServer | undefined;
      let env: Record<string, string> = {};
      if (runnable.length > 0) {
        beforeAll(async () => {
          srv = await startTestServer({}, {
            bus: new MemoryBus({ epoch: DOC_EPOCH, history: DEFAULTS.history }),
            metrics: steadyMetrics(),
          });
          const polled = new Set<string>();
          for (const b of runnable) {
            for (const m of b.lines.join('\n').matchAll(/[?&]channels=([A-Za-z0-9:_.,\-]+)/g)) m[1]!.split(',').forEach((c) => polled.add(c));
          }
          env = {
            PATH: process.env.PATH ?? '/usr/bin:/bin',
            HOME: process.env.HOME ?? '/tmp',
            TIDINGS_PUBLISHER_KEY: TEST_PUBLISHER_KEY,
            PK: TEST_PUBLISHER_KEY,
            TOKEN: await srv.token(polled.size > 0 ? [...polled] : ['user:42']),
          };
        });
        afterAll(async () => {
          await srv?.close();
        });
      }
      for (const b of shBlocks.filter((x) => x.file === file)) {
        const reason = b.notTested ? `not-tested: ${b.notTested}` : notRunnableReason(b);
        if (reason) {
          it.skip(`${where(b)} (${reason})`, () => {});
          continue;
        }
        for (const cmd of shellCommands(b)) {
          it(`${b.file}:${cmd.line} ${cmd.text.split('\n')[0]!.slice(0, 70)}`, async () => {
            checkCommand(cmd, await runCommand(cmd, srv!, env));
          });
        }
      }
    });
  }
});

describe('TypeScript / JavaScript examples (strict type-check against src/index.ts)', () => {
  const checked = tsBlocks.filter((b) => !b.notTested);
  // A snippet that must fail, compiled in the same program: proves the check can fail, and where it points.
  const canary: CodeBlock = {
    file: '(canary)', lang: 'ts', fenceLine: 100, notTested: null,
    lines: ["import { createClient } from 'tidings';", '', "createClient({ url: 'https://x', token: 't', channels: 'news' });"],
  };
  let outcome: TypecheckOutcome;
  beforeAll(() => {
    outcome = typecheckBlocks([...checked, canary], SDK_ENTRY);
  }, 60_000);

  it('the check catches a wrong snippet and names its doc line', () => {
    const errors = outcome.results.find((r) => r.block === canary)!.errors;
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatch(/^\(canary\):103:\d+ TS2322 /);
  });

  it('the check itself compiles cleanly (no diagnostics outside the snippets)', () => {
    expect(outcome.other).toEqual([]);
  });
  for (const b of tsBlocks) {
    if (b.notTested) {
      it.skip(`${where(b)} ${b.lang} (not-tested: ${b.notTested})`, () => {});
      continue;
    }
    it(`${where(b)} ${b.lang}`, () => {
      const r = outcome.results.find((x) => x.block === b)!;
      expect(r.errors.join('\n'), `type errors in ${where(b)}`).toBe('');
    });
  }
});

describe('the docs test reads the docs as intended', () => {
  it('reads commands, continuation lines and the outcome lines below them', () => {
    const block: CodeBlock = {
      file: 'x.md', lang: 'sh', fenceLine: 1, notTested: null,
      lines: ['# prose', 'curl -s a \\', '  -d b', '# {"ok":1}', '', '# prose', 'curl c', 'npm test'],
    };
    const cmds = shellCommands(block);
    expect(cmds.map((c) => [c.line, c.text, c.outcomes.map((o) => o.text)])).toEqual([
      [3, 'curl -s a \\\n  -d b', ['{"ok":1}']],
      [8, 'curl c', []],
      [9, 'npm test', []],
    ]);
    expect(notRunnableReason(block)).toMatch(/npm test/);
  });

  it('finds fences, indented ones too, and the not-tested marker', () => {
    const md = ['# T', '<!-- not-tested: browser only -->', '```ts', 'a;', '```', '- item', '', '  ```sh', '  curl x', '  ```'].join('\n');
    expect(extractBlocks('x.md', md)).toEqual([
      { file: 'x.md', lang: 'ts', fenceLine: 3, lines: ['a;'], notTested: 'browser only' },
      { file: 'x.md', lang: 'sh', fenceLine: 8, lines: ['curl x'], notTested: null },
    ]);
  });

  it('reads the documented outcome forms', () => {
    expect(parseOutcome('{"cursor":"e-1"}')).toEqual({ headers: {}, json: { cursor: 'e-1' } });
    expect(parseOutcome('200, ETag: "a=e-1;b=e-2", X-Poll-Interval: 5, {"messages":[]}')).toEqual({
      status: 200, headers: { etag: '"a=e-1;b=e-2"', 'x-poll-interval': '5' }, json: { messages: [] },
    });
    expect(parseOutcome('... Preference-Applied: wait=25')).toEqual({ headers: { 'preference-applied': 'wait=25' } });
    expect(parseOutcome('503 bus degraded  the Redis bus lost its connection')).toEqual({ status: 503, headers: {}, text: 'bus degraded' });
    expect(parseOutcome('prints the cursor')).toBeNull();
  });
});

describe('the docs test finds the examples', () => {
  it('has TypeScript blocks and runnable curl commands to test', () => {
    expect(tsBlocks.length).toBeGreaterThanOrEqual(2);
    const runnable = shBlocks.filter((b) => !b.notTested && notRunnableReason(b) === null);
    expect(runnable.flatMap(shellCommands).length).toBeGreaterThanOrEqual(5);
  });
});
