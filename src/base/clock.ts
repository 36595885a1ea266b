/** Monotonic time in milliseconds. The server injects the real one, the simulator a virtual one. */
export interface Clock {
  nowMs(): number;
}

/** A pending `Timers.after` callback; cancelling one that already ran does nothing. */
export interface TimerHandle {
  cancel(): void;
}

/**
 * Time and one-shot timers for code below src/server, which may not touch
 * setTimeout: the server injects real ones, the simulator its scheduler.
 */
export interface Timers extends Clock {
  after(delayMs: number, run: () => void): TimerHandle;
}
