/** Backend set-up for the experiments: train/backends/backend.ts's `initBackend`, once per process (its kernels come with it). */
import { type BackendName, initBackend } from '../train/backends/backend.ts';

export type BackendRequest = 'auto' | BackendName;

let active: string | undefined;

export async function setupBackend(requested: BackendRequest, log: (line: string) => void = () => {}): Promise<string> {
  if (active && (requested === 'auto' || requested === active)) return active;
  const backend = await initBackend(requested, log);
  log(`backend: ${backend.name} (${backend.detail})`);
  active = backend.name;
  return active;
}
