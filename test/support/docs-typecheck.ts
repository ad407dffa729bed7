// Type-checks the TypeScript / JavaScript examples of the docs against the SDK's
// real types (src/index.ts; src/react.ts for `tidings/react`, with React's own
// types for `react` and TSX), each as its own module, in strict mode.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import ts from 'typescript';
import type { CodeBlock } from './docs-blocks.js';

const REPO = path.resolve(import.meta.dirname, '../..');

/**
 * Application functions the examples call without defining them, as a page
 * would have them. Declared only when a snippet calls the name and does not
 * define it itself.
 */
const APP_FUNCTIONS: Record<string, string> = {
  showMail: 'declare function showMail(data: unknown): void;',
  reloadMailbox: 'declare function reloadMailbox(channel: string): void;',
  showBadge: "declare function showBadge(state: import('tidings').State): void;",
  render: 'declare function render(channel: string, data: unknown): void;',
};

export interface SnippetResult {
  block: CodeBlock;
  /** `file:line:col TS1234 message`, with the doc's line; empty when it compiles. */
  errors: string[];
}

export interface TypecheckOutcome {
  results: SnippetResult[];
  /** Diagnostics outside the snippets (options, src/): any means the check itself is broken. */
  other: string[];
}

function prelude(block: CodeBlock): string[] {
  const code = block.lines.join('\n');
  const lines: string[] = [];
  for (const [name, decl] of Object.entries(APP_FUNCTIONS)) {
    const called = new RegExp(`\\b${name}\\s*\\(`).test(code);
    const defined = new RegExp(`\\b(function|const|let|var|class)\\s+${name}\\b`).test(code);
    if (called && !defined) lines.push(decl);
  }
  // Each snippet is a module of its own, even one with no import.
  lines.push('export {};');
  return lines;
}

/** `sdkEntry`: the file `'tidings'` resolves to (src/index.ts). */
export function typecheckBlocks(blocks: CodeBlock[], sdkEntry: string): TypecheckOutcome {
  const dir = mkdtempSync(path.join(tmpdir(), 'tidings-docs-'));
  try {
    writeFileSync(path.join(dir, 'package.json'), '{"type":"module"}\n');
    const files = new Map<string, { block: CodeBlock; offset: number }>();
    blocks.forEach((block, i) => {
      const pre = prelude(block);
      const ext = block.lang === 'js' || block.lang === 'javascript' ? 'js' : block.lang === 'tsx' ? 'tsx' : 'ts';
      const name = path.join(dir, `${i}-${block.file.replace(/[^A-Za-z0-9]+/g, '_')}-L${block.fenceLine}.${ext}`);
      writeFileSync(name, [...pre, ...block.lines].join('\n') + '\n');
      // Snippet line 0 is the doc's fenceLine + 1; it sits after the prelude.
      files.set(path.normalize(name), { block, offset: block.fenceLine + 1 - pre.length });
    });
    const options: ts.CompilerOptions = {
      strict: true,
      noImplicitOverride: true,
      noFallthroughCasesInSwitch: true,
      target: ts.ScriptTarget.ES2022,
      lib: ['lib.es2023.d.ts', 'lib.dom.d.ts', 'lib.dom.iterable.d.ts'],
      module: ts.ModuleKind.NodeNext,
      moduleResolution: ts.ModuleResolutionKind.NodeNext,
      types: [],
      skipLibCheck: true,
      allowJs: true,
      checkJs: true,
      noEmit: true,
      jsx: ts.JsxEmit.ReactJSX,
      // The snippets sit in a temp dir, outside any node_modules: point the names they import at the real files.
      paths: {
        tidings: [sdkEntry],
        'tidings/react': [path.join(path.dirname(sdkEntry), 'react.ts')],
        react: [path.join(REPO, 'node_modules/@types/react/index.d.ts')],
        'react/jsx-runtime': [path.join(REPO, 'node_modules/@types/react/jsx-runtime.d.ts')],
        // Vue is no dependency: a stub with the signatures the Vue example uses.
        vue: [path.join(REPO, 'test/support/stubs/vue.d.ts')],
      },
    };
    const program = ts.createProgram([...files.keys()], options);
    const byFile = new Map<string, string[]>();
    const other: string[] = [];
    for (const d of ts.getPreEmitDiagnostics(program)) {
      const msg = ts.flattenDiagnosticMessageText(d.messageText, '\n');
      const snippet = d.file ? files.get(path.normalize(d.file.fileName)) : undefined;
      if (d.file && snippet && d.start !== undefined) {
        const { line, character } = d.file.getLineAndCharacterOfPosition(d.start);
        const where = `${snippet.block.file}:${line + snippet.offset}:${character + 1}`;
        const list = byFile.get(d.file.fileName) ?? [];
        list.push(`${where} TS${d.code} ${msg}`);
        byFile.set(d.file.fileName, list);
      } else {
        other.push(`${d.file ? d.file.fileName : '(options)'} TS${d.code} ${msg}`);
      }
    }
    const results = [...files.entries()].map(([name, { block }]) => ({
      block,
      errors: [...byFile.entries()].filter(([f]) => path.normalize(f) === name).flatMap(([, e]) => e),
    }));
    return { results, other };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
