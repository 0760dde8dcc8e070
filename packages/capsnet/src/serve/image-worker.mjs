// Worker entry for serve/image-pool.ts: worker threads do not inherit tsx's loader hooks, so load the
// TypeScript worker through tsx's scoped import.
import { tsImport } from 'tsx/esm/api';

const worker = await tsImport('./image-worker.ts', import.meta.url);
export const decodeTask = worker.decodeTask;
