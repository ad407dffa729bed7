// CONTRACT (filled in by the ws-core work): every failure has a stable code and
// the protocol's answer, declared once in a table (STYLE.md §5).

/** Frame-level failures after the 101: each maps to an RFC 6455 / PROTOCOL.md close code. */
export const PROTOCOL_ERRORS = {
  UNMASKED_FRAME: 1002,          // RFC 6455 §5.1: client frames MUST be masked
  RESERVED_BITS: 1002,           // §5.2: RSV1-3 set without an extension
  BAD_OPCODE: 1002,              // §5.2: reserved opcodes 3-7, B-F
  CONTROL_FRAGMENTED: 1002,      // §5.5: control frames MUST NOT be fragmented
  CONTROL_TOO_LONG: 1002,        // §5.5: control payload <= 125
  UNEXPECTED_CONTINUATION: 1002, // §5.4: continuation with no message open
  EXPECTED_CONTINUATION: 1002,   // §5.4: new data frame while a fragmented message is open
  BAD_LENGTH: 1002,              // §5.2: non-minimal length encoding or 64-bit length with MSB set
  BAD_CLOSE_PAYLOAD: 1002,       // §5.5.1: close payload of 1 byte
  BAD_CLOSE_CODE: 1002,          // §7.4: close code not allowed on the wire
  INVALID_UTF8: 1007,            // §8.1: text (or close reason) not valid UTF-8
  MESSAGE_TOO_BIG: 1009,         // message over the configured limit
  TOO_MANY_FRAGMENTS: 1009,      // message in more frames than config.maxFragments (too big, counted in frames)
} as const;
export type ProtocolErrorCode = keyof typeof PROTOCOL_ERRORS;

export class ProtocolError extends Error {
  readonly closeCode: number;
  constructor(readonly code: ProtocolErrorCode, message: string) {
    super(message);
    this.name = 'ProtocolError';
    this.closeCode = PROTOCOL_ERRORS[code];
  }
}

/** Handshake failures before any 101: each carries its HTTP answer (PROTOCOL.md "Handshake"). */
export const HANDSHAKE_ERRORS = {
  MALFORMED_REQUEST: 400,
  NOT_AN_UPGRADE: 400,
  BAD_KEY: 400,
  BAD_VERSION: 426,          // answered with Sec-WebSocket-Version: 13
  HEAD_TOO_LARGE: 431,       // RFC 6585 §5: request header fields too large
  ORIGIN_FORBIDDEN: 403,
  OVER_CAPACITY: 503,        // answered with Retry-After
  NOT_FOUND: 404,
} as const;
export type HandshakeErrorCode = keyof typeof HANDSHAKE_ERRORS;

export class HandshakeError extends Error {
  readonly status: number;
  constructor(readonly code: HandshakeErrorCode, message: string) {
    super(message);
    this.name = 'HandshakeError';
    this.status = HANDSHAKE_ERRORS[code];
  }
}
