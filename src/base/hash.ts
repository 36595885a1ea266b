/**
 * FNV-1a (64-bit, as two 32-bit halves) over strings, used for trace hashes
 * and replica state digests. Not cryptographic; it detects divergence.
 */
export class Fnv64 {
  private high = 0xcbf29ce4;
  private low = 0x84222325;

  update(text: string): this {
    for (let i = 0; i < text.length; i++) {
      const c = text.charCodeAt(i);
      this.mix(c & 0xff);
      if (c > 0xff) this.mix(c >>> 8);
    }
    return this;
  }

  updateBytes(bytes: Uint8Array): this {
    for (const b of bytes) this.mix(b);
    return this;
  }

  digest(): string {
    return this.high.toString(16).padStart(8, '0') + this.low.toString(16).padStart(8, '0');
  }

  private mix(byte: number): void {
    this.low = (this.low ^ byte) >>> 0;
    // Multiply by the 64-bit FNV prime 0x100000001b3 using 32-bit halves.
    const lowTimes = this.low * 0x1b3;
    const carry = Math.floor(lowTimes / 0x100000000);
    const newLow = lowTimes >>> 0;
    const newHigh = (Math.imul(this.high, 0x1b3) + ((this.low << 8) >>> 0) + carry) >>> 0;
    this.low = newLow;
    this.high = newHigh;
  }
}
