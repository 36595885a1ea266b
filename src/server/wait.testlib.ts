/**
 * Polls `probe` until it gives something other than undefined, or fails
 * naming `what` after `timeoutMs`. For tests of in-process nodes, whose
 * state is read directly.
 */
export async function waitFor<T>(probe: () => T | undefined | Promise<T | undefined>, what: string, timeoutMs = 15_000, pauseMs = 20): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, pauseMs));
  }
}
