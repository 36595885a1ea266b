export {
  MAX_KEY_BYTES,
  MAX_VALUE_BYTES,
  MAX_VALUE_HEAD_BYTES,
  type KeyValue,
  type ReadView,
  type ScanOptions,
  type VisitOptions,
  type Visitor,
  type StorageEngine,
  type WriteBatch,
} from './engine.js';
export { MemoryEngine, type CrashReport, type MemoryEngineOptions } from './memory.js';
export { compareBytes, bytesEqual } from './bytes.js';
