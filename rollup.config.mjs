// Builds the browser SDK (src/) into dist/: ESM, CJS, bundled types, and a
// minified IIFE for <script> tags (window.Tidings). reconnecting-websocket and
// mitt are vendored in src/vendor/ (reviewed, pinned, reduced to what the SDK
// uses, with fixes listed there) and compiled like the rest of src/, so the
// tests run exactly the code that ships and npm users get no runtime deps.
import resolve from '@rollup/plugin-node-resolve';
import terser from '@rollup/plugin-terser';
import typescript from '@rollup/plugin-typescript';
import { dts } from 'rollup-plugin-dts';

const ts = () =>
  typescript({
    tsconfig: './tsconfig.json',
    include: ['src/**/*.ts'],
    compilerOptions: { noEmit: false, declaration: false, module: 'esnext', moduleResolution: 'bundler', target: 'es2021', types: [] },
  });

// Third-party notices of the bundled code live in their packages; the min build keeps only this line.
const banner = '/*! tidings | MIT | includes reconnecting-websocket (MIT), mitt (MIT) */';

export default [
  {
    input: 'src/index.ts',
    plugins: [resolve({ browser: true }), ts()],
    output: [
      { file: 'dist/tidings.mjs', format: 'es', banner },
      { file: 'dist/tidings.cjs', format: 'cjs', banner },
    ],
  },
  {
    input: 'src/index.ts',
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
    input: 'src/index.ts',
    plugins: [dts({ tsconfig: './tsconfig.json', compilerOptions: { types: [] } })],
    output: { file: 'dist/tidings.d.ts', format: 'es' },
  },
];
