import { createMemorySnapshotStore } from '../../src/adapters/memory/snapshot-store.js';
import { snapshotStoreContract } from './snapshot-store.contract.js';

snapshotStoreContract('memory', async () => ({ store: createMemorySnapshotStore(), cleanup: async () => undefined }));
