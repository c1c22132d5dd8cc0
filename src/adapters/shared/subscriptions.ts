/**
 * The subscriptions a bus client opened, so `close()` of the client closes them all; a
 * subscription closed on its own leaves the set. Shared by the in-process and JetStream buses.
 */
import type { BusSubscription } from '../../ports/bus.js';

export function subscriptionSet() {
  const owned = new Set<BusSubscription>();
  return {
    /** Remembers `s` until it is closed; returns it. */
    track<T extends BusSubscription>(s: T): T {
      owned.add(s);
      const close = s.close.bind(s);
      s.close = async () => {
        owned.delete(s);
        await close();
      };
      return s;
    },
    /** Closes every open subscription (errors ignored: the client is going away). */
    async closeAll(): Promise<void> {
      await Promise.all([...owned].map((s) => s.close().catch(() => undefined)));
    },
  };
}
