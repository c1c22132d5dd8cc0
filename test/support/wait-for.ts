/**
 * Waits for a condition instead of sleeping: polls on the next turns of the event loop (a few
 * setImmediate turns, then short timers) and fails with a clear message when time runs out.
 */

export interface WaitForOptions {
  /** Give up after this long. Default 5000 ms. */
  timeoutMs?: number;
  /** Names what was awaited in the timeout error. */
  what?: string;
}

const nextTurn = (polls: number): Promise<void> =>
  new Promise((resolve) => (polls < 20 ? setImmediate(resolve) : setTimeout(resolve, 5)));

/**
 * Resolves as soon as `cond()` returns (or resolves to) true; throws
 * `waitFor timed out after <ms> ms: <what>` otherwise. An exception thrown by `cond` propagates.
 */
export async function waitFor(
  cond: () => boolean | Promise<boolean>,
  timeoutMsOrOptions: number | WaitForOptions = {},
): Promise<void> {
  const options = typeof timeoutMsOrOptions === 'number' ? { timeoutMs: timeoutMsOrOptions } : timeoutMsOrOptions;
  const timeoutMs = options.timeoutMs ?? 5_000;
  const deadline = Date.now() + timeoutMs;
  for (let polls = 0; ; polls++) {
    if (await cond()) return;
    if (Date.now() >= deadline) {
      throw new Error(`waitFor timed out after ${timeoutMs} ms${options.what ? `: ${options.what}` : ''}`);
    }
    await nextTurn(polls);
  }
}
