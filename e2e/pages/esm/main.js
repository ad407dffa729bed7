// The ESM page: imports the SDK by its package name, as an application would.
import { createClient } from 'tidings';
import { startInbox } from '../../../server/demo/app.js';

const server = new URLSearchParams(location.search).get('server');
if (!server) throw new Error('?server=http://127.0.0.1:PORT is required');
startInbox({ createClient, server, root: document.getElementById('app') });
