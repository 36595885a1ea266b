import { CRC32C } from '../base/index.js';

/** A running CRC-32C (Castagnoli), the checksum etcd's HashKV uses. */
export class Crc32c {
  private crc = CRC32C.init;

  update(bytes: Uint8Array): this {
    this.crc = CRC32C.update(this.crc, bytes);
    return this;
  }

  digest(): number {
    return CRC32C.finish(this.crc);
  }
}

/** The CRC-32C of `bytes`. */
export function crc32c(bytes: Uint8Array): number {
  return CRC32C.of(bytes);
}
