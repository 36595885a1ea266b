import { unreachable } from '../base/index.js';
import { type RangeOptions, type RangeResult, executeRange } from './range.js';
import type { MvccState } from './state.js';
import type { TxnTarget } from './txn.js';
import type { DeleteRangeResult, PutResult } from './write-txn.js';

/**
 * The current state seen the way a write transaction that has not written
 * yet sees it, for a read-only txn (isTxnReadOnly): executeTxn runs over it
 * exactly as over a WriteTxn, so a txn served as a read answers what the
 * same txn proposed through Raft would. Nothing may write through it.
 */
export class ReadTxn implements TxnTarget {
  readonly changeCount = 0;

  /** @internal Use MvccStore.readTxn. */
  constructor(private readonly state: MvccState) {}

  get viewRevision(): number {
    return this.state.currentRevision;
  }

  get compactedRevision(): number {
    return this.state.compactedRevision;
  }

  range(options: RangeOptions): RangeResult {
    return executeRange(this.state, options, this.state.currentRevision);
  }

  put(): PutResult {
    return unreachable('a put reached a read-only txn; the caller checks isTxnReadOnly');
  }

  deleteRange(): DeleteRangeResult {
    return unreachable('a delete reached a read-only txn; the caller checks isTxnReadOnly');
  }
}
