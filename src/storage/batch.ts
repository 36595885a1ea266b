import { TesseraError } from '../base/index.js';
import { compareBytes, describeKey } from './bytes.js';
import { MAX_KEY_BYTES, MAX_VALUE_BYTES, type WriteBatch } from './engine.js';

export type BatchOp =
  | { readonly kind: 'put'; readonly key: Uint8Array; readonly value: Uint8Array }
  | { readonly kind: 'delete'; readonly key: Uint8Array }
  | { readonly kind: 'delete-range'; readonly start: Uint8Array; readonly end: Uint8Array };

/**
 * The one WriteBatch implementation, shared by every engine so that they
 * validate input identically. It copies keys and values as they are queued:
 * the caller may reuse its buffers at once, and the in-memory engine, which
 * keeps these very arrays, is never changed behind its back.
 */
export class RecordingBatch implements WriteBatch {
  private readonly queued: BatchOp[] = [];
  private bytes = 0;
  private isSealed = false;

  get sealed(): boolean {
    return this.isSealed;
  }

  get count(): number {
    return this.queued.length;
  }

  get sizeBytes(): number {
    return this.bytes;
  }

  get ops(): readonly BatchOp[] {
    return this.queued;
  }

  put(key: Uint8Array, value: Uint8Array): void {
    this.checkPut(key, value);
    this.queued.push({ kind: 'put', key: key.slice(), value: value.slice() });
    this.bytes += key.length + value.length;
  }

  putOwned(key: Uint8Array, value: Uint8Array): void {
    this.checkPut(key, value);
    this.queued.push({ kind: 'put', key, value });
    this.bytes += key.length + value.length;
  }

  delete(key: Uint8Array): void {
    this.checkOpen();
    checkKey(key);
    this.queued.push({ kind: 'delete', key: key.slice() });
    this.bytes += key.length;
  }

  deleteRange(start: Uint8Array, end: Uint8Array): void {
    this.checkOpen();
    // An empty or inverted range deletes nothing, as a scan of it returns nothing.
    if (compareBytes(start, end) >= 0) return;
    this.queued.push({ kind: 'delete-range', start: start.slice(), end: end.slice() });
    this.bytes += start.length + end.length;
  }

  /** Called by an engine's commit: a batch is applied once, and changes after that would be lost silently. */
  seal(): void {
    if (this.isSealed) throw new TesseraError('INVALID_ARGUMENT', 'this write batch was already committed');
    this.isSealed = true;
  }

  private checkPut(key: Uint8Array, value: Uint8Array): void {
    this.checkOpen();
    checkKey(key);
    if (value.length > MAX_VALUE_BYTES) {
      throw new TesseraError('INVALID_ARGUMENT', `value of ${value.length} bytes for key ${describeKey(key)} exceeds the limit of ${MAX_VALUE_BYTES}`);
    }
  }

  private checkOpen(): void {
    if (this.isSealed) throw new TesseraError('INVALID_ARGUMENT', 'cannot add to a write batch after it was committed');
  }
}

/** Narrows a caller's batch to ours; a foreign implementation cannot be read, so it is refused. */
export function asRecordingBatch(batch: WriteBatch): RecordingBatch {
  if (!(batch instanceof RecordingBatch)) {
    throw new TesseraError('INVALID_ARGUMENT', 'commit takes only batches made by newBatch()');
  }
  return batch;
}

function checkKey(key: Uint8Array): void {
  // LMDB cannot store an empty key; every engine refuses it so that they behave alike.
  if (key.length === 0) throw new TesseraError('INVALID_ARGUMENT', 'keys must not be empty');
  if (key.length > MAX_KEY_BYTES) {
    throw new TesseraError('INVALID_ARGUMENT', `key ${describeKey(key)} exceeds the limit of ${MAX_KEY_BYTES} bytes`);
  }
}
