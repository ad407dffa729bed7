// Builds the browser SDK (src/) into dist/, one set of files per entry point
// (ENTRIES below): ESM (.mjs) and CJS (.cjs) with source maps, and bundled
// types (.d.ts); the main entry also gets a minified IIFE for <script> tags
// (window.Tidings). reconnecting-websocket and mitt are vendored in src/vendor/
// (reviewed, pinned, reduced to what the SDK uses, with the fixes listed there)
// and compiled like the rest of src/: the tests run exactly the code that ships,
// and npm users get a package with no runtime deps. scripts/stage-packages.mjs then lays dist/ out
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
  // All entries in one build (one TypeScript program): none shares code with
  // another (subpaths import the main entry as `tidings`), so each output file
  // is one entry and no chunk is split off.
  {
    input: ENTRIES,
    external,
    plugins: [mainAsPackage(), resolve({ browser: true }), ts()],
    output: ['mjs', 'cjs'].map((ext) => ({
      dir: 'dist',
      format: ext === 'mjs' ? 'es' : 'cjs',
      entryFileNames: `[name].${ext}`,
      banner: (chunk) => bannerOf(chunk.name),
      sourcemap: true,
    })),
  },
  {
    input: MAIN,
    plugins: [resolve({ browser: true }), ts()],
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
          // The vendored RWS's private fields all start with "_" and never leave it: safe to shorten.
          mangle: { properties: { regex: /^_[A-Za-z]/ } },
          format: { comments: /tidings/ },
        }),
      ],
    },
  },
  {
    input: ENTRIES,
    external,
    plugins: [mainAsPackage(), dts({ tsconfig: './tsconfig.json', compilerOptions: { types: [] } })],
    output: { dir: 'dist', format: 'es', entryFileNames: '[name].d.ts' },
  },
];
