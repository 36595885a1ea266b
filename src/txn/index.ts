/**
 * src/txn: transactions across ranges (issue 14, ADR 0017): the coordinator
 * that reads at S, prepares, commits at C and resolves. The ranges' side of
 * each step is src/mvcc/participant.ts.
 */
export {
  TXN_EXPIRY_MS,
  TXN_HEARTBEAT_MS,
  TXN_MAX_ATTEMPTS,
  TXN_WAIT_POLL_MS,
  TxnCoordinator,
  type ReadAnswer,
  type TxnCoordinatorOptions,
  type TxnOutcome,
  type TxnPlan,
  type TxnRanges,
  type TxnWrite,
} from './coordinator.js';
export type { TxnBugName, TxnSabotage } from './sabotage.js';
export { NodeTransactions, type NodeTransactionsOptions, type NodeTxnApi, TXN_SWEEP_BATCH, TXN_SWEEP_INTERVAL_MS } from './node_txns.js';
export { atRevision, crossRangeTxnProblem, etcdTxnPlan } from './etcd_txn.js';
