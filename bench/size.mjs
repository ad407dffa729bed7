// Benchmark 6: SDK size. Every library bundled the same way: esbuild, IIFE,
// minified, browser platform, everything it exports (no tree-shaking help),
// then gzip -9. Tidings is bundled from its built ESM module dist/tidings.mjs
// (which includes mitt and the build's trimmed reconnecting-websocket) and,
// for comparison, from src/index.ts with the untrimmed reconnecting-websocket;
// the shipped dist/tidings.min.js (rollup + terser) is reported beside them.
import { build } from 'esbuild';
import { gzipSync, brotliCompressSync, constants } from 'node:zlib';
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { target } from './lib/bench.mjs';

export const name = 'size';
const ROOT = fileURLToPath(new URL('../', import.meta.url));

/** label -> module specifier bundled with `export * from …`. */
export const LIBRARIES = {
  // The built ESM module (rollup has trimmed reconnecting-websocket to what the SDK drives),
  // bundled by esbuild exactly like the references: the comparable number.
  'tidings (dist/tidings.mjs, esbuild)': `${ROOT}dist/tidings.mjs`,
  // The sources with the untrimmed reconnecting-websocket, for comparison.
  'tidings (src, esbuild)': `${ROOT}src/index.ts`,
  'reconnecting-websocket': 'reconnecting-websocket',
  partysocket: 'partysocket',
  'socket.io-client': 'socket.io-client',
  centrifuge: 'centrifuge',
  phoenix: 'phoenix',
  'graphql-ws (client)': 'graphql-ws/client',
  mitt: 'mitt',
};

export const gzip9 = (buf) => gzipSync(buf, { level: 9 }).length;

async function bundle(spec, metafile = false) {
  const r = await build({
    stdin: { contents: `export * from ${JSON.stringify(spec)};`, resolveDir: ROOT, loader: 'js' },
    bundle: true,
    format: 'iife',
    globalName: 'Lib',
    minify: true,
    platform: 'browser',
    target: 'es2020',
    write: false,
    logLevel: 'silent',
    legalComments: 'none',
    metafile,
  });
  const out = Buffer.from(r.outputFiles[0].contents);
  return metafile ? { out, meta: r.metafile } : out;
}

function sizes(buf) {
  return { minBytes: buf.length, gzipBytes: gzip9(buf), brotliBytes: brotliCompressSync(buf, { params: { [constants.BROTLI_PARAM_QUALITY]: 11 } }).length };
}

export async function run({ log = console.error } = {}) {
  const rows = {};
  for (const [label, spec] of Object.entries(LIBRARIES)) {
    if (spec.startsWith(`${ROOT}dist/`) && !existsSync(spec)) continue; // not built: `npm run build`
    try {
      rows[label] = sizes(await bundle(spec));
      log(`  ${label}: ${rows[label].minBytes} B min, ${rows[label].gzipBytes} B gzip -9`);
    } catch (err) {
      rows[label] = { error: String(err.message ?? err).split('\n')[0] };
      log(`  ${label}: ${rows[label].error}`);
    }
  }
  // Where Tidings' bytes come from: minified bytes per input file (before gzip).
  let breakdown = null;
  try {
    const { meta } = await bundle(LIBRARIES['tidings (src, esbuild)'], true);
    const inputs = Object.values(meta.outputs)[0].inputs;
    breakdown = Object.entries(inputs).map(([file, v]) => [file.replace(/^.*node_modules\//, '').replace(/^.*?src\//, 'src/'), v.bytesInOutput]).filter(([, b]) => b > 0).sort((a, b) => b[1] - a[1]);
  } catch {}
  const dist = `${ROOT}dist/tidings.min.js`;
  if (existsSync(dist)) rows['tidings (dist/tidings.min.js, rollup+terser)'] = sizes(readFileSync(dist));
  const shipped = rows['tidings (dist/tidings.min.js, rollup+terser)'];
  const esb = rows['tidings (dist/tidings.mjs, esbuild)'];
  const targets = [
    target('tidings gzip -9, esbuild IIFE like the references (bytes, incl. mitt + reconnecting-websocket)', esb?.gzipBytes ?? NaN, '<=', 6144),
    target('tidings gzip -9, shipped dist/tidings.min.js (bytes)', shipped?.gzipBytes ?? NaN, '<=', 6144),
    target('aim: tidings gzip -9, esbuild IIFE (bytes)', esb?.gzipBytes ?? NaN, '<=', 5120),
  ];
  return { name, rows, breakdown, targets };
}
