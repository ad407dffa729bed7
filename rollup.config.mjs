// Builds the browser SDK (src/) into dist/, one set of files per entry point
// (ENTRIES below): ESM (.mjs) and CJS (.cjs) with source maps, and bundled
// types (.d.ts); the main entry also gets a minified IIFE for <script> tags
// (window.Tidings). reconnecting-websocket and mitt are bundled into every
// output: their own typings break under TypeScript NodeNext, and npm users get a
// package with no runtime deps. scripts/stage-packages.mjs then lays dist/ out
// as the packages ship it (packages/tidings, packages/tidings-server).
import resolve from '@rollup/plugin-node-resolve';
import terser from '@rollup/plugin-terser';
import typescript from '@rollup/plugin-typescript';
import { dts } from 'rollup-plugin-dts';
import { resolve as resolvePath } from 'node:path';

/**
 * Entry points of the SDK package: dist/<name>.* from src/<file>. The first is
 * the package's main entry (`tidings`); every other one is a subpath
 * (`tidings/<name>`) that reaches the main entry through the package name, so
 * an app that imports both runs one copy of the client (and one TidingsError
 * class), not one per entry.
 */
export const ENTRIES = { tidings: 'src/index.ts', react: 'src/react.ts' };
const [MAIN] = Object.values(ENTRIES);
const mainId = resolvePath(MAIN);

/** Subpath entries import the main one as `tidings` (an external), never inline it. */
const mainAsPackage = () => ({
  name: 'tidings-main-as-package',
  async resolveId(source, importer, options) {
    if (!importer || resolvePath(importer) === mainId) return null;
    const r = await this.resolve(source, importer, { ...options, skipSelf: true });
    return r && !r.external && resolvePath(r.id) === mainId ? { id: 'tidings', external: true } : null;
  },
});

/**
 * Trims reconnecting-websocket 4.4.0 (bundled, unmaintained) to what the SDK
 * uses. RWS is private to src/transport/websocket.ts, which constructs it with
 * a function URL provider returning a promise, a WebSocket constructor, both
 * delays 0 and a connectionTimeout (no maxRetries, startClosed or debug), and
 * then only calls reconnect() and close(): it never calls send() or
 * add/removeEventListener, sets no on* handler and reads no accessor. So,
 * with behaviour unchanged for exactly those options, the build removes:
 * - the dev-only `debug` logger and its calls (with tslib's __spread/__read);
 * - the public members the SDK never touches (send, dispatchEvent,
 *   add/removeEventListener, every accessor, the ready-state constants), and
 *   what only they fed: the message queue, listener lists, on* handlers,
 *   binaryType, the message handler, and the Event/ErrorEvent/CloseEvent
 *   classes with tslib's __extends;
 * - the delay computation: 0 · factor^n capped at 0 is 0, so the retry count
 *   that only scaled it, maxRetries (default Infinity), the 5 s "uptime" timer
 *   that reset it, and DEFAULT (with its module-load Math.random) go;
 * - the URL provider's string/function dispatch and the global-WebSocket
 *   fallback (ours is always a function; the WebSocket option always given).
 * If websocket.ts ever passes other options, revisit this list. Each pattern
 * must match (the given number of times), else the build fails: a new RWS
 * version must be looked at, not silently shipped half-trimmed.
 * test/sdk/size.test.ts runs the built bundles against the fake server.
 */
const trimRws = () => ({
  name: 'trim-reconnecting-websocket',
  transform(code, id) {
    if (!id.includes('reconnecting-websocket')) return null;
    code = code.replace(/\r\n/g, '\n'); // the file mixes CRLF and LF
    const cut = (re, by = '', times = 1) => {
      const n = code.match(new RegExp(re.source, re.flags.replace('g', '') + 'g'))?.length ?? 0;
      if (n !== times) this.error(`reconnecting-websocket: ${re} matched ${n}× (want ${times}), check trim-reconnecting-websocket`);
      code = code.replace(new RegExp(re.source, re.flags.replace('g', '') + 'g'), by);
    };
    const esc = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    const line = (s, times = 1) => cut(new RegExp(`^ *${esc(s)}\\n`, 'm'), '', times);
    const method = (name) => new RegExp(`    ReconnectingWebSocket\\.prototype\\.${name} = function \\([^)]*\\) \\{[\\s\\S]*?\\n    \\};\\n`);
    const accessor = (name, proto = true) =>
      cut(new RegExp(`    Object\\.defineProperty\\(ReconnectingWebSocket${proto ? '\\.prototype' : ''}, "${name}", \\{[\\s\\S]*?\\n    \\}\\);\\n`));

    // Dev-only logging: every call, and the logger.
    cut(/^ *(_this|this)\._debug\(.*\);\n/m, '', 17);
    cut(method('_debug'));
    // Public members the SDK never touches, and what only they used.
    for (const m of ['dispatchEvent', 'send', 'addEventListener', 'removeEventListener', '_callEventListener', '_getNextDelay', '_getNextUrl', '_acceptOpen']) cut(method(m));
    for (const a of ['CONNECTING', 'OPEN', 'CLOSING', 'CLOSED']) accessor(a, false), accessor(a);
    for (const a of ['binaryType', 'retryCount', 'bufferedAmount', 'extensions', 'protocol', 'readyState', 'url']) accessor(a);
    cut(/this\.CLOSED/, '3', 2);
    cut(/ +this\._listeners = \{[^}]*\};\n/);
    cut(/ +_this\._listeners\.\w+\.forEach\(function \(listener\) \{ return _this\._callEventListener\(event, listener\); \}\);\n/, '', 4);
    cut(/ +if \(_this\.on(\w+)\) \{\n +_this\.on\1\(event\);\n +\}\n/, '', 4);
    for (const h of ['onclose', 'onerror', 'onmessage', 'onopen']) line(`this.${h} = null;`);
    line("this._binaryType = 'blob';");
    line('_this._ws.binaryType = _this._binaryType;', 2);
    line('this._messageQueue = [];');
    line('// send enqueued messages (messages sent before websocket open event)');
    line('_this._messageQueue.forEach(function (message) { return _this._ws.send(message); });');
    line('_this._messageQueue = [];');
    // With no listeners left, the message handler has nothing to do.
    cut(/ +this\._handleMessage = function \(event\) \{\n +\};\n/);
    line("this._ws.removeEventListener('message', this._handleMessage);");
    line("this._ws.addEventListener('message', this._handleMessage);");
    // The events only fed the removed listeners; the error handler reads `message` alone.
    cut(/new ErrorEvent\(Error\('TIMEOUT'\), this\)/, "{ message: 'TIMEOUT' }");
    cut(/this\._handleClose\(new CloseEvent\(code, reason, this\)\)/, 'this._handleClose()');
    cut(/var Event = \/\*\* @class \*\/[\s\S]*?return CloseEvent;\n\}\(Event\)\);\n/);
    cut(/\/\*! \*+\nCopyright \(c\) Microsoft[\s\S]*?\nfunction __extends\(d, b\) \{[\s\S]*?\n\}\n/); // tslib's header and __extends
    // Delay 0 (our options): no retry count, no uptime timer, no maxRetries.
    cut(/setTimeout\(resolve, _this\._getNextDelay\(\)\)/, 'setTimeout(resolve, 0)');
    line('this._retryCount = -1;', 2);
    line('this._retryCount++;');
    cut(/ +if \(this\._retryCount >= maxRetries\) \{[^}]*\}\n/);
    line('var _a = _this._options.minUptime, minUptime = _a === void 0 ? DEFAULT.minUptime : _a;');
    line('_this._uptimeTimeout = setTimeout(function () { return _this._acceptOpen(); }, minUptime);');
    line('clearTimeout(this._uptimeTimeout);');
    cut(/ +if \(this\._options\.startClosed\) \{\n[^}]*\}\n/);
    cut(
      /var _a = this\._options, _b = _a\.maxRetries, .*?, WebSocket = _d === void 0 \? getGlobalWebSocket\(\) : _d;/,
      'var _a = this._options, connectionTimeout = _a.connectionTimeout, WebSocket = _a.WebSocket;',
    );
    cut(/var DEFAULT = \{[^}]*\};\n/);
    cut(/_this\._getNextUrl\(_this\._url\)/, '_this._url()');
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
const banner = '/*! tidings | MIT | includes reconnecting-websocket (MIT), mitt (MIT) */';
const bannerOf = (name) => (name === 'tidings' ? banner : `/*! tidings/${name} | MIT */`);

/** Peer dependencies a subpath entry may import (never bundled). */
const external = ['react', 'react-dom'];

export default [
  ...Object.entries(ENTRIES).map(([name, input]) => ({
    input,
    external,
    plugins: [mainAsPackage(), resolve({ browser: true }), trimRws(), ts()],
    output: [
      { file: `dist/${name}.mjs`, format: 'es', banner: bannerOf(name), sourcemap: true },
      { file: `dist/${name}.cjs`, format: 'cjs', banner: bannerOf(name), sourcemap: true },
    ],
  })),
  {
    input: MAIN,
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
          compress: { passes: 3, unsafe_arrows: true },
          // RWS's private fields all start with "_" and never leave it: safe to shorten.
          mangle: { properties: { regex: /^_[A-Za-z]/ } },
          format: { comments: /tidings/ },
        }),
      ],
    },
  },
  ...Object.entries(ENTRIES).map(([name, input]) => ({
    input,
    external,
    plugins: [mainAsPackage(), dts({ tsconfig: './tsconfig.json', compilerOptions: { types: [] } })],
    output: { file: `dist/${name}.d.ts`, format: 'es' },
  })),
];
