/** A client command of the simulator's workload; the node turns it into an etcd Txn. */
export type KvCommand =
  | { readonly op: 'put'; readonly key: string; readonly value: string }
  | { readonly op: 'delete'; readonly key: string }
  | { readonly op: 'cas'; readonly key: string; readonly expected: string | null; readonly value: string };

export interface KvResult {
  readonly value?: string | null;
  readonly succeeded?: boolean;
  /** A write's answer: the store's revision after it (etcd's header.revision), the write's own when it changed the key. */
  readonly revision?: number;
}

/** A write a client was told succeeded, and the revision it was told: the lost-write oracle checks it is kept. */
export interface AckedWrite {
  readonly key: string;
  /** The value written, or null for a delete. */
  readonly value: string | null;
  readonly revision: number;
}
