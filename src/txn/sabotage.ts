/**
 * Deliberate bugs of the transaction protocol (issue 14), used only to
 * prove that the simulator's transactional workloads and the Elle-style
 * checker catch them. As with src/raft/sabotage.ts, a TxnSabotage can only
 * be made here, and the layering lint lets only src/sim and tests import
 * this file (production code imports its type alone).
 */
export type TxnBugName = 'txn-skips-read-validation' | 'txn-commits-secondaries-first' | 'txn-resolves-at-fresh-revisions' | 'txn-reader-ignores-intents';

export const TXN_BUG_DESCRIPTIONS: Readonly<Record<TxnBugName, string>> = {
  'txn-skips-read-validation': 'a prepare carries no read set: keys the transaction read but does not write are neither checked for newer versions nor locked, so two transactions can each read what the other writes (write skew)',
  'txn-commits-secondaries-first': "the coordinator resolves the other ranges' intents as committed before the primary's record is COMMITTED, so a transaction whose record a pusher aborts meanwhile is half applied",
  'txn-resolves-at-fresh-revisions': 'each range resolves its intents at a revision of its own, asked for after the commit, instead of the one commit revision C, so the transaction takes effect at several revisions and a read between them sees half of it',
  'txn-reader-ignores-intents': 'a read at a revision skips the intents below it instead of asking their records, so it misses a transaction that committed at or below the read revision but is not resolved yet',
};

export const TXN_BUG_NAMES: readonly TxnBugName[] = Object.keys(TXN_BUG_DESCRIPTIONS) as TxnBugName[];

declare const txnSabotageBrand: unique symbol;

export class TxnSabotage {
  declare private readonly [txnSabotageBrand]: true;
  private constructor(private readonly bugs: ReadonlySet<TxnBugName>) {}

  static of(...bugs: TxnBugName[]): TxnSabotage {
    return new TxnSabotage(new Set(bugs));
  }

  has(bug: TxnBugName): boolean {
    return this.bugs.has(bug);
  }
}

export function isTxnBugName(name: string): name is TxnBugName {
  return Object.hasOwn(TXN_BUG_DESCRIPTIONS, name);
}
