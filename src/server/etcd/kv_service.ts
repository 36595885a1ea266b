import { assert } from '../../base/index.js';
import { mvccError, validateTxnRequest, type TxnRequest, type TxnResponse } from '../../mvcc/index.js';
import type { KvApi } from '../../kv/index.js';
import {
  hasUnknownLeaseId,
  safeInt,
  toDeleteRangeRequest,
  toPutRequest,
  toRangeOptions,
  toTxnRequest,
  toWireKeyValue,
  toWireRangeResponse,
  toWireTxnResponse,
} from './convert.js';
import { ETCD_STATUS, EtcdApiError } from './errors.js';
import type { EtcdLimits } from './limits.js';
import {
  REQUEST_BYTES,
  type Sized,
  type WireCompactionRequest,
  type WireDeleteRangeRequest,
  type WireDeleteRangeResponse,
  type WirePutRequest,
  type WirePutResponse,
  type WireRangeRequest,
  type WireRangeResponse,
  type WireResponseHeader,
  type WireTxnRequest,
  type WireTxnResponse,
} from './proto.js';

export type HeaderFor = (revision: number) => WireResponseHeader;

/**
 * etcd's KV service over one node's KvApi. Checks run in etcd's order: the
 * request's own checks (v3rpc/key.go), then the size limit (etcdserver, on
 * the proposal), then the store's (compacted, future revision, lease, …).
 * Put and DeleteRange are one-op transactions, so all writes take one path.
 */
export class KvService {
  constructor(
    private readonly kv: KvApi,
    private readonly headerFor: HeaderFor,
    private readonly limits: EtcdLimits,
  ) {}

  async range(r: WireRangeRequest): Promise<WireRangeResponse> {
    const options = toRangeOptions(r);
    // Refused before the read barrier, as etcd's checkRangeRequest does.
    if (options.key.length === 0) throw mvccError('EMPTY_KEY');
    const result = await this.kv.range(options, r.serializable === true);
    return toWireRangeResponse(result, this.headerFor(result.revision));
  }

  async put(r: WirePutRequest): Promise<WirePutResponse> {
    const response = await this.write({ compare: [], success: [{ type: 'put', put: toPutRequest(r) }], failure: [] }, r);
    const op = response.responses[0];
    assert(op?.type === 'put', 'a one-put txn answers with a put');
    const out: WirePutResponse = { header: this.headerFor(op.put.revision) };
    if (op.put.prevKv !== undefined) out.prev_kv = toWireKeyValue(op.put.prevKv);
    return out;
  }

  async deleteRange(r: WireDeleteRangeRequest): Promise<WireDeleteRangeResponse> {
    const request: TxnRequest = { compare: [], success: [{ type: 'deleteRange', deleteRange: toDeleteRangeRequest(r) }], failure: [] };
    const response = await this.write(request, r);
    const op = response.responses[0];
    assert(op?.type === 'deleteRange', 'a one-delete txn answers with a delete');
    const d = op.deleteRange;
    return { header: this.headerFor(d.revision), deleted: d.deleted, prev_kvs: d.prevKvs.map(toWireKeyValue) };
  }

  async txn(r: WireTxnRequest): Promise<WireTxnResponse> {
    const response = await this.write(toTxnRequest(r, this.limits.maxTxnOps), r);
    return toWireTxnResponse(response, this.headerFor(response.revision));
  }

  async compact(r: WireCompactionRequest): Promise<{ header: WireResponseHeader }> {
    // `physical` is accepted: compaction here drops history at once and deletes superseded records in bounded steps.
    await this.kv.compact(safeInt(r.revision));
    return { header: this.headerFor(this.kv.currentRevision()) };
  }

  private write(request: TxnRequest, wire: Sized): Promise<TxnResponse> {
    validateTxnRequest(request, this.limits.maxTxnOps);
    if ((wire[REQUEST_BYTES] ?? 0) > this.limits.maxRequestBytes) throw new EtcdApiError(ETCD_STATUS.REQUEST_TOO_LARGE);
    // No lease can have such an id; refusing here keeps it out of the log (the store would refuse it too).
    if (hasUnknownLeaseId(request)) throw mvccError('LEASE_NOT_FOUND');
    return this.kv.txn(request);
  }
}
