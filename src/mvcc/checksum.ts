/** CRC-32C (Castagnoli), the checksum etcd's HashKV uses; table built once at load. */
const CRC32C_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0x82f63b78 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

export class Crc32c {
  private crc = 0xffffffff;

  update(bytes: Uint8Array): this {
    let c = this.crc;
    for (const b of bytes) c = CRC32C_TABLE[(c ^ b) & 0xff]! ^ (c >>> 8);
    this.crc = c;
    return this;
  }

  digest(): number {
    return (this.crc ^ 0xffffffff) >>> 0;
  }
}

/** The CRC-32C of `bytes`. */
export function crc32c(bytes: Uint8Array): number {
  return new Crc32c().update(bytes).digest();
}
