import type { Timers } from '../base/index.js';

/** The process's own clock and timers, for the code below src/server that takes a Timers. */
export const realTimers: Timers = {
  nowMs: () => performance.now(),
  after: (delayMs, run) => {
    const timer = setTimeout(run, delayMs);
    return { cancel: () => clearTimeout(timer) };
  },
};
