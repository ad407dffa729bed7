import { rollup } from 'rollup';
import { gzipSync } from 'node:zlib';
import { resolve } from 'node:path';
process.chdir('/work/i10');
const configs = (await import('/work/i10/rollup.config.mjs')).default;
const cfg = configs.find((c) => !Array.isArray(c.output) && c.output.format === 'iife');
async function build(stub) {
  const plugins = stub ? [{ name: 'stub', resolveId(id, imp) { if (id === './share/index.js') return '\0share-stub'; }, load(id) { if (id === '\0share-stub') return 'export const canShare = () => false; export const sharedEngine = undefined;'; } }, ...cfg.plugins] : cfg.plugins;
  const b = await rollup({ ...cfg, plugins, onwarn: () => {} });
  const { output } = await b.generate(cfg.output);
  return output[0].code;
}
const full = await build(false), core = await build(true);
const gz = (s) => gzipSync(s, { level: 9 }).length;
console.log('full', full.length, gz(full), 'core', core.length, gz(core), 'delta', gz(full) - gz(core));
