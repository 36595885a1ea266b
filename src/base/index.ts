export { AssertionError, assert, assertNever, unreachable } from './assert.js';
export { TesseraError, isTesseraError, type TesseraErrorCode } from './errors.js';
export { type Rng, SeededRng } from './rng.js';
export { type Clock, type TimerHandle, type Timers } from './clock.js';
export { Fnv64 } from './hash.js';
export { type Crc32, CRC32, CRC32C, makeCrc32 } from './crc.js';
export { BYTE_SLAB_BYTES, BYTE_SLAB_MAX_ALLOC, allocBytes, latin1String, sharesBuffer } from './bytes.js';
