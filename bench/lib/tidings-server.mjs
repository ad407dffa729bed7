// Our server, in-process inside host.mjs: createTidingsServer(config) from
// dist/server when built, else from the TypeScript sources (host runs under tsx).
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

export async function startTidings({ secret, publisherKey, env = {} }) {
  const base = existsSync(`${ROOT}dist/server/server.js`) ? `${ROOT}dist/server/` : `${ROOT}server/`;
  const ext = base.includes('/dist/') ? '.js' : '.ts';
  const { createTidingsServer } = await import(`${base}server${ext}`);
  const { loadConfig } = await import(`${base}config${ext}`);
  const { config } = loadConfig(
    {
      TIDINGS_PORT: '0',
      TIDINGS_HOST: '127.0.0.1',
      TIDINGS_SUBSCRIBER_SECRET: secret,
      TIDINGS_PUBLISHER_KEY: publisherKey,
      TIDINGS_LOG_LEVEL: 'warn',
      ...env,
    },
    [],
  );
  const srv = createTidingsServer(config);
  const { port } = await srv.listen();
  return { port, connections: () => srv.ctx.control.connections(), close: () => srv.close() };
}
