// Builds the browser SDK (src/) into dist/: ESM, CJS, bundled types, and a
// minified IIFE for <script> tags (window.Tidings). reconnecting-websocket and
// mitt are bundled into every output: their own typings break under
// TypeScript NodeNext, and npm users get a package with no runtime deps.
import resolve from '@rollup/plugin-node-resolve';
import terser from '@rollup/plugin-terser';
import typescript from '@rollup/plugin-typescript';
import { dts } from 'rollup-plugin-dts';

/**
 * Trims reconnecting-websocket 4.4.0 (bundled, unmaintained) to what the SDK
 * uses. Its `debug` logger drags in tslib's __spread/__read and "RWS>"
 * strings (dev-only; we never pass `debug`): replaced by a no-op. Public
 * members the SDK never touches (dispatchEvent, and the bufferedAmount,
 * extensions, protocol, url, retryCount and binaryType accessors) are
 * removed; RWS itself reads only the private fields behind them. Each pattern
 * must match, else the build fails: a new RWS version must be looked at, not
 * silently shipped untrimmed. test/sdk/size.test.ts runs the built bundle
 * against the fake server.
 */
const trimRws = () => ({
  name: 'trim-reconnecting-websocket',
  transform(code, id) {
    if (!id.includes('reconnecting-websocket')) return null;
    const cut = (re, by = '') => {
      if (!re.test(code)) this.error(`reconnecting-websocket: ${re} not found, check trim-reconnecting-websocket`);
      code = code.replace(re, by);
    };
    const method = (name) => new RegExp(`ReconnectingWebSocket\\.prototype\\.${name} = function \\([^)]*\\) \\{[\\s\\S]*?\\n    \\};`);
    cut(method('_debug'), 'ReconnectingWebSocket.prototype._debug = function () {};');
    cut(method('dispatchEvent'));
    for (const name of ['bufferedAmount', 'extensions', 'protocol', 'url', 'retryCount', 'binaryType'])
      cut(new RegExp(`Object\\.defineProperty\\(ReconnectingWebSocket\\.prototype, "${name}", \\{[\\s\\S]*?\\n    \\}\\);`));
    return { code, map: null };
  },
});

const ts = () =>
  typescript({
    tsconfig: './tsconfig.json',
    include: ['src/**/*.ts'],
    compilerOptions: { noEmit: false, declaration: false, module: 'esnext', moduleResolution: 'bundler', target: 'es2021', types: [] },
  });

// Third-party notices of the bundled code live in their packages; the min build keeps only this line.
const banner = '/*! tidings | MIT | includes reconnecting-websocket (MIT), mitt (MIT), tslib helpers (Microsoft, 0BSD/Apache-2.0) */';

export default [
  {
    input: 'src/index.ts',
    plugins: [resolve({ browser: true }), trimRws(), ts()],
    output: [
      { file: 'dist/tidings.mjs', format: 'es', banner },
      { file: 'dist/tidings.cjs', format: 'cjs', banner },
    ],
  },
  {
    input: 'src/index.ts',
    plugins: [resolve({ browser: true }), trimRws(), ts()],
    output: {
      file: 'dist/tidings.min.js',
      format: 'iife',
      name: 'Tidings',
      sourcemap: true,
      banner,
      plugins: [
        terser({
          ecma: 2020,
          compress: { passes: 3, unsafe_arrows: true, pure_funcs: ['this._debug', '_this._debug'] },
          // RWS's private fields all start with "_" and never leave it: safe to shorten.
          mangle: { properties: { regex: /^_[A-Za-z]/ } },
          format: { comments: /tidings/ },
        }),
      ],
    },
  },
  {
    input: 'src/index.ts',
    plugins: [dts({ tsconfig: './tsconfig.json', compilerOptions: { types: [] } })],
    output: { file: 'dist/tidings.d.ts', format: 'es' },
  },
];
