/**
 * Tidings browser SDK: real-time notifications over WebSocket with a
 * 304-aware polling fallback. Wire contract: PROTOCOL.md.
 */
export { createClient } from './client.js';
export { TidingsError, type ErrorCode } from './errors.js';
export type {
  BackoffOptions, Client, ClientOptions, Clock, Disconnect, EventMessage, ProbeOptions, ResetMessage, State, TidingsEvents, Transport,
} from './types.js';
export type { Engine, EngineEvent, EngineOptions, EngineSink } from './engine.js';
