/**
 * History checkers (research/reliability.md section 2). Pure: callers read
 * files and clocks and pass them in.
 */
export { checkOperations } from './check.js';
export type {
  BudgetReason,
  CheckFailure,
  CheckOptions,
  CheckResult,
  Model,
  NondeterministicModel,
  Operation,
  StepResult,
  Verdict,
} from './types.js';
export { fromNondeterministic } from './models/nondeterministic.js';
export { partitionByKey } from './models/partition.js';
export {
  etcdRegisterModel,
  type EtcdRegisterInput,
  type EtcdRegisterOutput,
  type EtcdRegisterState,
} from './models/register.js';
export { kvModel, type KvInput, type KvOutput, type KvState } from './models/kv.js';
export { HashedStringMap } from './models/string-map.js';
export { kvCasModel, type KvCasInput, type KvCasOutput, type KvCasState } from './models/kv-cas.js';
export { parseJepsenEtcdLog } from './parse/jepsen-etcd.js';
export { parseEdnKvLog } from './parse/edn-kv.js';
export { describeOperation } from './failure.js';
export { parseTxnHistory, type MicroOp, type Scalar, type Txn, type TxnStatus, TXN_HISTORY_MAX_OPS } from './txn/history.js';
export { checkTxnHistory, type TxnAnomaly, type TxnBudgetReason, type TxnCheckOptions, type TxnCheckResult, type TxnModel, TXN_CYCLES_PER_KIND, TXN_DEFAULT_MAX_EDGES } from './txn/check.js';
