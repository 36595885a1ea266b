/** Monotonic time in milliseconds. The server injects the real one, the simulator a virtual one. */
export interface Clock {
  nowMs(): number;
}
