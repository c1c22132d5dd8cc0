/**
 * Group commit for the SQLite event store: appends issued during one event-loop turn are queued
 * and flushed together from `setImmediate`, so they share one write transaction. Appends of
 * several HTTP requests read from the sockets in the same poll phase end up in one COMMIT.
 */
import type { AppendResult, ExpectedRevision, NewEvent, StoredEvent } from '../../ports/event-store.js';

export interface QueuedAppend {
  stream: string;
  events: NewEvent[];
  expected: ExpectedRevision;
  time: string;
  resolve(result: AppendResult): void;
  reject(error: unknown): void;
}

/** What one queued append came to inside the group's transaction. */
export interface AppendOutcome {
  /** Newly stored events. */
  stored?: StoredEvent[];
  /** An idempotent retry: the original result, nothing stored. */
  result?: AppendResult;
  /** Its own failure (a ConcurrencyError, a bad retry); the others in the group are unaffected. */
  failure?: unknown;
}

export class AppendGroup {
  private queue: QueuedAppend[] = [];
  private scheduled = false;

  /** Queues an append; `flush` runs once, at the end of this event-loop turn, for everything queued by then. */
  enqueue(a: Omit<QueuedAppend, 'resolve' | 'reject'>, flush: () => void): Promise<AppendResult> {
    return new Promise<AppendResult>((resolve, reject) => {
      this.queue.push({ ...a, resolve, reject });
      if (this.scheduled) return;
      this.scheduled = true;
      setImmediate(flush);
    });
  }

  /** Everything queued so far, in call order (the order they are committed in). */
  take(): QueuedAppend[] {
    this.scheduled = false;
    const q = this.queue;
    this.queue = [];
    return q;
  }
}

/**
 * The events this connection appended most recently, so in-process subscriptions (the projector,
 * the notifier, SSE) are handed the objects the appender already holds instead of reading rows
 * back and parsing their JSON. Only a run of consecutive positions starting right after a cursor
 * is served from here; anything else (another process appended in between, the cursor is older
 * than what is kept) is read from the table, so a subscriber can never skip an event.
 */
export class RecentEvents {
  private events: StoredEvent[] = [];
  private first = 0; // index of the oldest kept event (the array is compacted now and then)

  constructor(private readonly capacity = 8192) {}

  add(events: StoredEvent[]): void {
    for (const e of events) this.events.push(e);
    const kept = this.events.length - this.first;
    if (kept > this.capacity) this.first += kept - this.capacity;
    if (this.first > this.capacity) {
      this.events = this.events.slice(this.first);
      this.first = 0;
    }
  }

  /**
   * Up to `limit` events with positions after+1, after+2, ... (contiguous), or null when the event
   * at after+1 is not held here.
   */
  after(after: string | null | undefined, limit: number): StoredEvent[] | null {
    const kept = this.events.length - this.first;
    if (kept === 0 || limit <= 0) return null;
    const want = (after == null ? 0 : Number(after)) + 1;
    const start = this.indexOf(want);
    if (start < 0) return null;
    const out: StoredEvent[] = [this.events[start]!];
    let next = want + 1;
    for (let i = start + 1; i < this.events.length && out.length < limit; i++, next++) {
      const e = this.events[i]!;
      if (Number(e.position) !== next) break;
      out.push(e);
    }
    return out;
  }

  /** Index of the event at `position`; positions are increasing, mostly by 1, so guess then search. */
  private indexOf(position: number): number {
    const head = Number(this.events[this.first]!.position);
    const guess = this.first + position - head;
    if (guess >= this.first && guess < this.events.length && Number(this.events[guess]!.position) === position) return guess;
    let lo = this.first;
    let hi = this.events.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const p = Number(this.events[mid]!.position);
      if (p === position) return mid;
      if (p < position) lo = mid + 1;
      else hi = mid - 1;
    }
    return -1;
  }

  clear(): void {
    this.events = [];
    this.first = 0;
  }
}
