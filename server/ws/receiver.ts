// CONTRACT: the receiver is a state machine over TCP chunks (STYLE.md §4). Its
// state lives in fields of the connection object itself, so an idle connection
// holds no buffer: `spill` is non-null only while a frame is split across reads,
// `frags` only while a fragmented message is open.
import type { ProtocolError } from './errors.js';

export interface ReceiverState {
  /** Bytes of an incomplete frame carried over to the next chunk, else null. */
  spill: Buffer | null;
  /** Payloads of a fragmented message received so far, else null. */
  frags: Buffer[] | null;
  /** Opcode of the open fragmented message (OP_TEXT/OP_BINARY), 0 when none. */
  fragOpcode: number;
  /** Total payload bytes in `frags`. */
  fragBytes: number;
}

/** Shared callbacks (one object for all connections: no closure per connection). */
export interface ReceiverSink<C> {
  /** A complete data message. Text is already UTF-8 validated. `data` may be a view into the chunk. */
  message(conn: C, data: Buffer, isText: boolean): void;
  ping(conn: C, payload: Buffer): void;
  pong(conn: C, payload: Buffer): void;
  /** A close frame; code 1005 when the payload was empty. Code and reason already validated. */
  close(conn: C, code: number, reason: string): void;
  /** A protocol violation; the receiver stops parsing this chunk. Send close with err.closeCode. */
  error(conn: C, err: ProtocolError): void;
}

export declare function initReceiver(state: ReceiverState): void;

/**
 * Feed one chunk. Calls sink methods synchronously for every complete frame/message.
 * Unmasks in place (the chunk is ours). `maxMessage` bounds a single message (all
 * fragments together, and each frame's declared length): over it -> MESSAGE_TOO_BIG
 * before buffering the payload. Stops at the first error or when `sink` closed the
 * connection (the receiver checks `stopped(conn)` between frames if provided).
 */
export declare function receive<C extends ReceiverState>(conn: C, chunk: Buffer, maxMessage: number, sink: ReceiverSink<C>): void;
