// docs/protocol.md is the project's own copy of the wire contract (the packages
// ship it as PROTOCOL.md): users must be able to read the protocol they are told
// to follow without the ../shared folder that only the maintainers have.
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('..', import.meta.url));
const shared = fileURLToPath(new URL('../../shared/PROTOCOL.md', import.meta.url));

describe('docs/protocol.md', () => {
  it.runIf(existsSync(shared))('equals ../shared/PROTOCOL.md, the contract it copies (cp ../shared/PROTOCOL.md docs/protocol.md)', () => {
    expect(readFileSync(`${root}docs/protocol.md`, 'utf8')).toBe(readFileSync(shared, 'utf8'));
  });

  it('is what README.md and both package READMEs link to', () => {
    for (const [file, target] of [['README.md', 'docs/protocol.md'], ['packages/tidings/README.md', 'PROTOCOL.md'], ['packages/tidings-server/README.md', 'PROTOCOL.md']] as const) {
      const text = readFileSync(`${root}${file}`, 'utf8');
      expect(text, file).toContain(`](${target})`);
      expect(text, file).not.toContain('../shared/');
    }
  });
});
