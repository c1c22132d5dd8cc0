import { createMemoryEventStore } from '../../src/adapters/memory/event-store.js';
import { eventStoreContract } from './event-store.contract.js';

// A small batch size makes the catch-up tests page; a 1 ms backoff keeps the failure test fast.
eventStoreContract('memory', async () => {
  const store = createMemoryEventStore({ batchSize: 7, retryDelayMs: () => 1 });
  return { store, cleanup: () => store.close() };
});
