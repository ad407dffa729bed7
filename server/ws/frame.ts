// CONTRACT: pure RFC 6455 §5.2 frame header codec over Buffers. No I/O.
export const OP_CONTINUATION = 0x0;
export const OP_TEXT = 0x1;
export const OP_BINARY = 0x2;
export const OP_CLOSE = 0x8;
export const OP_PING = 0x9;
export const OP_PONG = 0xa;

/** Bytes a server (unmasked) frame header needs for a payload of `length` bytes: 2, 4 or 10. */
export declare function headerSize(length: number): number;

/** One complete unmasked server frame (FIN set) carrying `payload`. Allocates exactly once. */
export declare function encodeFrame(opcode: number, payload: Buffer): Buffer;

/** A text frame around already-serialized UTF-8 JSON; used to encode an event once for every subscriber. */
export declare function encodeText(text: string): Buffer;

/** A close frame: 2-byte code + UTF-8 reason (truncated so the payload stays <= 125 bytes). */
export declare function encodeClose(code: number, reason?: string): Buffer;

/** XOR `buf[start, end)` with the 4-byte mask in place (RFC 6455 §5.3). */
export declare function unmask(buf: Buffer, mask: Buffer | Uint8Array, start: number, end: number): void;

/** RFC 6455 §7.4: may this close code appear on the wire in a close frame from a peer? */
export declare function isValidCloseCode(code: number): boolean;
