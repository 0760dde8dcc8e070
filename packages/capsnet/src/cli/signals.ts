/**
 * Ctrl-C (SIGINT) and SIGTERM for the commands that stop cleanly (train, classify): the first signal asks the
 * command to stop at its next safe point; a second one, a second or more later, quits at once.
 */
import { constants as osConstants } from 'node:os';

/** Copies of one signal arrive within this: each layer in front of the command can pass it on once. */
const SAME_SIGNAL_MS = 1000;

/**
 * Calls `stop(name)` on the first SIGINT or SIGTERM and `quit(name)` on a later one (quit should exit). Copies
 * within a second are that first signal, not a second request: npx's npm and shell, bin/capsnet.js (which relays
 * it when stdin is not a terminal) and a process-group kill (`timeout -s INT`, a CI cancel) each deliver one.
 * @returns `release`, which removes the handlers, and `stoppedBy`, the first signal (undefined: none came).
 */
export function onStopSignals(
  stop: (name: NodeJS.Signals) => void,
  quit: (name: NodeJS.Signals) => void,
): { release: () => void; stoppedBy: () => NodeJS.Signals | undefined } {
  let first: NodeJS.Signals | undefined;
  let firstAt = 0;
  const onSignal = (name: NodeJS.Signals) => {
    if (first !== undefined) {
      if (Date.now() - firstAt >= SAME_SIGNAL_MS) quit(name);
      return;
    }
    first = name;
    firstAt = Date.now();
    stop(name);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  return {
    stoppedBy: () => first,
    release: () => {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      // A command that stopped may finish before the other copies of its signal arrive: without a handler, the
      // default action would kill it mid-exit (its output's end unwritten). Ignore them for the rest of the window.
      const left = first === undefined ? 0 : SAME_SIGNAL_MS - (Date.now() - firstAt);
      if (left <= 0) return;
      const ignore = () => {};
      process.on('SIGINT', ignore);
      process.on('SIGTERM', ignore);
      setTimeout(() => {
        process.off('SIGINT', ignore);
        process.off('SIGTERM', ignore);
      }, left).unref();
    },
  };
}

/** A process stopped by a signal exits 128 + its number (the shell's convention): SIGINT 130, SIGTERM 143. */
export function signalExitCode(name: NodeJS.Signals | undefined): number {
  return 128 + (osConstants.signals[name ?? 'SIGINT'] ?? 2);
}
