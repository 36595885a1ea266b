/** What the log-matching oracle reads of a node's Raft log (RaftLog has it). */
export interface LogTerms {
  firstIndex(): number;
  lastIndex(): number;
  termOrUndefined(index: number): number | undefined;
}

/**
 * Log Matching (Raft §5.3, Figure 3): if two logs hold an entry with the same
 * index and term, they are identical in every entry up to it. Checked here on
 * terms over the indexes both logs still hold: below the highest index where
 * the terms agree, every term must agree. (That the entries' contents agree is
 * state machine safety's part, for every entry applied.) `window` limits the
 * indexes compared, so the check can run on every append. Returns a
 * description of the first difference, or undefined.
 */
export function logMatchingViolation(
  a: { readonly id: number; readonly log: LogTerms },
  b: { readonly id: number; readonly log: LogTerms },
  window: { readonly lo: number; readonly hi: number } = { lo: 0, hi: Infinity },
): string | undefined {
  const lo = Math.max(a.log.firstIndex(), b.log.firstIndex(), window.lo);
  const hi = Math.min(a.log.lastIndex(), b.log.lastIndex(), window.hi);
  let top = -1;
  for (let i = hi; i >= lo; i--) {
    const t = a.log.termOrUndefined(i);
    if (t !== undefined && t === b.log.termOrUndefined(i)) {
      top = i;
      break;
    }
  }
  for (let i = lo; i < top; i++) {
    const ta = a.log.termOrUndefined(i);
    const tb = b.log.termOrUndefined(i);
    if (ta !== tb) return `log matching: nodes ${a.id} and ${b.id} agree on entry ${top} (term ${a.log.termOrUndefined(top)}) but differ at ${i} (terms ${ta ?? 'none'} and ${tb ?? 'none'})`;
  }
  return undefined;
}
