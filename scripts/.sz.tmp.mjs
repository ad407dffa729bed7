import { rollup } from 'rollup';
import terser from '@rollup/plugin-terser';
import typescript from '@rollup/plugin-typescript';
import { gzipSync } from 'node:zlib';
const b = await rollup({ input: ['src/share/machine.ts', 'src/share/index.ts'], external: (id) => !id.includes('share'), plugins: [typescript({ tsconfig: './tsconfig.json', include: ['src/**/*.ts'], compilerOptions: { noEmit: false, declaration: false, module: 'esnext', moduleResolution: 'bundler', target: 'es2021', types: [] } })], onwarn: () => {} });
const { output } = await b.generate({ format: 'es', plugins: [terser({ ecma: 2020, compress: { passes: 3, unsafe_arrows: true } })] });
for (const c of output) if (c.type === "chunk") { console.log(c.fileName, c.code.length, gzipSync(c.code, { level: 9 }).length); if (process.env.SHOW === c.fileName) console.log(c.code); }
