/** A client command of the simulator's workload; the node turns it into an etcd Txn. */
export type KvCommand =
  | { readonly op: 'put'; readonly key: string; readonly value: string }
  | { readonly op: 'delete'; readonly key: string }
  | { readonly op: 'cas'; readonly key: string; readonly expected: string | null; readonly value: string };

export interface KvResult {
  readonly value?: string | null;
  readonly succeeded?: boolean;
}
