// The demo mailbox listing, read from the bus's own history: no second copy of
// the mails. Each demo user gets a start cursor (the channel head when the page
// first asked for a token or its inbox); the listing is what the bus still
// holds after it. The in-memory bus forgets everything on restart, and so does
// this table: after a restart the listing is empty, which is the point of the
// "mailbox reloaded" notice on the page.
import type { Bus, StoredEvent } from '../pubsub/bus.js';

export const INBOX_LIMITS = {
  /** Mailboxes whose start cursor we remember; past it the oldest is forgotten (and restarts empty). */
  maxInboxes: 10_000,
  /** Mails returned by one listing: the most recent ones. */
  maxListed: 100,
} as const;

export interface Mail {
  cursor: string;
  data: unknown;
}

export class Inboxes {
  private readonly starts = new Map<string, string>();

  constructor(
    private readonly bus: Bus,
    private readonly limits: { maxInboxes: number; maxListed: number } = INBOX_LIMITS,
  ) {}

  /** Remember where `channel`'s mailbox starts (first call wins). */
  async open(channel: string): Promise<void> {
    if (this.starts.has(channel)) return;
    const head = await this.bus.head(channel);
    if (this.starts.has(channel)) return; // another request won the race
    if (this.starts.size >= this.limits.maxInboxes) {
      // Map iteration is insertion order: the first key is the oldest mailbox.
      const oldest = this.starts.keys().next().value;
      if (oldest !== undefined) this.starts.delete(oldest);
    }
    this.starts.set(channel, head);
  }

  get size(): number {
    return this.starts.size;
  }

  /**
   * The most recent mails of `channel`, oldest first. When the bus can no longer
   * prove it holds everything after the start (history trimmed), the mailbox
   * restarts at the current head: the listing may shrink but never lies.
   */
  async list(channel: string): Promise<Mail[]> {
    await this.open(channel);
    const start = this.starts.get(channel)!;
    const replay = await this.bus.readAfter(channel, start);
    if (replay.kind === 'reset') {
      this.starts.set(channel, replay.head);
      return [];
    }
    return replay.events.slice(-this.limits.maxListed).map(toMail);
  }
}

function toMail(e: StoredEvent): Mail {
  return { cursor: e.cursor, data: JSON.parse(e.json) as unknown };
}
