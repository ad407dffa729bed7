// Reference for polling: the cheapest node:http handler that answers 304.
import http from 'node:http';

export function createHttp304Server() {
  const server = http.createServer((req, res) => {
    res.writeHead(304);
    res.end();
  });
  return { server, connections: () => 0 };
}
