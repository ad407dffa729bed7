// docs/auth.md: each token-minting example (Node with jose, Python and Java with
// their standard libraries) is run as written, with the secret in the
// environment; the token it prints must pass the server's own verification.
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { verifySubscriberToken } from '../../server/auth/tokens.js';

const root = path.resolve(import.meta.dirname, '../..');
const doc = readFileSync(path.join(root, 'docs/auth.md'), 'utf8');
const SECRET = 'docs-example-secret-0123456789-abcdef';
const run = promisify(execFile);

function block(lang: string): string {
  const m = new RegExp('```' + lang + '\\n([\\s\\S]*?)```').exec(doc);
  if (!m) throw new Error(`docs/auth.md has no \`\`\`${lang} block`);
  return m[1]!;
}

function onPath(bin: string): boolean {
  return (process.env.PATH ?? '').split(':').some((d) => d !== '' && existsSync(path.join(d, bin)));
}

async function expectValid(stdout: string): Promise<void> {
  const claims = await verifySubscriberToken(SECRET, stdout.trim());
  expect(claims.sub).toBe('42');
  expect(claims.ch).toEqual(['user:42']);
  const ttl = claims.exp - Date.now() / 1000;
  expect(ttl).toBeGreaterThan(3500);
  expect(ttl).toBeLessThanOrEqual(3601);
}

const env = { ...process.env, TIDINGS_SUBSCRIBER_SECRET: SECRET };

describe('docs/auth.md token examples', () => {
  it('Node (jose)', async () => {
    // Inside the repository, so `import 'jose'` resolves from node_modules as in an app.
    const file = path.join(root, `.auth-example-${process.pid}.mjs`);
    writeFileSync(file, block('js'));
    try {
      await expectValid((await run(process.execPath, [file], { env })).stdout);
    } finally {
      rmSync(file, { force: true });
    }
  });

  it.skipIf(!onPath('python3'))('Python (standard library)', async () => {
    await expectValid((await run('python3', ['-c', block('python')], { env })).stdout);
  });

  it.skipIf(!onPath('java'))('Java (standard library, single-file source)', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'tidings-java-'));
    try {
      writeFileSync(path.join(dir, 'MintTidingsToken.java'), block('java'));
      await expectValid((await run('java', [path.join(dir, 'MintTidingsToken.java')], { env, timeout: 60_000 })).stdout);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 90_000);
});
