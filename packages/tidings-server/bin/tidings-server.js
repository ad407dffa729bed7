#!/usr/bin/env node
// The `tidings-server` command. A committed stub rather than the compiled
// main.js itself, so that npm links the workspace package's bin at install
// time, before anything is built.
try {
  await import('../dist/server/main.js');
} catch (err) {
  if (err?.code !== 'ERR_MODULE_NOT_FOUND' || !String(err.message).includes('dist/server/main.js')) throw err;
  process.stderr.write('tidings-server: the server is not built; run `npm run build` at the repository root first\n');
  process.exit(1);
}
