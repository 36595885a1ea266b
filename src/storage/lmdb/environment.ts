import { mkdir, open as openFile, readdir, stat } from 'node:fs/promises';
import { endianness } from 'node:os';
import { join } from 'node:path';
import { open, type Database, type RootDatabase } from 'lmdb';
import { AssertionError, TesseraError } from '../../base/index.js';
import { MAX_VALUE_HEAD_BYTES } from '../engine.js';
import { bytesEqual } from '../bytes.js';

/**
 * Opening a tessera LMDB environment: the directory checks, the LMDB options,
 * and the header record that marks the environment as ours and names its
 * format version. Anything else found at the path is refused, never adopted
 * or overwritten.
 */

/**
 * Bumped when the on-disk layout changes incompatibly; an environment of another version is refused.
 * 2: MVCC revisions start at 1, as in etcd (mvcc meta format 3). A version-1 directory numbers them
 * from 0, and a node replaying the same log from it would give other revisions than its peers.
 * 3: applied request ids are kept by log index only (no id → index records); a version-2 directory
 * holds id records this build would never expire, and would ship them in snapshots.
 * 4: the dedupe window is the request ids of the last log entries, read from the log; records exist
 * only for window entries the log dropped. A version-3 member expires ids on another rule, so the two
 * could decide differently whether a retried command is a duplicate.
 * 5: the MVCC meta record counts the stored change records (mvcc meta format 4), so that a store
 * whose damaged pages hide some of them is refused at open.
 * 6: committed batches are in the write-ahead log (wal.log) until a checkpoint writes them into LMDB
 * (ADR 0011); a version-5 build would open the environment without replaying the log and lose them.
 */
export const LMDB_FORMAT_VERSION = 6;
/**
 * Address space mapped at open. It is not a cap: lmdb-js enlarges the map when
 * a transaction fills it (its README: mapSize is "the initial amount"), so a
 * 1 MiB map took 4 MiB of writes without MDB_MAP_FULL. There is no storage
 * quota yet (etcd's --quota-backend-bytes and NOSPACE alarm); the disk is.
 */
export const LMDB_DEFAULT_MAP_SIZE_BYTES = 16 * 1024 ** 3;
export const LMDB_MIN_MAP_SIZE_BYTES = 1024 ** 2;
export const LMDB_MAX_MAP_SIZE_BYTES = 4 * 1024 ** 4;
/** Concurrent read transactions (open snapshots and scans); LMDB's own default. */
export const LMDB_DEFAULT_MAX_READERS = 126;
export const LMDB_MAX_READERS_LIMIT = 4096;
/** 4 KiB pages give MAX_KEY_BYTES (1978) as the key limit; set explicitly so no platform default changes it. */
export const LMDB_PAGE_SIZE = 4096;
/** Named databases: data and meta, with room to grow without a format change. */
const LMDB_MAX_DBS = 4;
/** The file LMDB keeps its pages in, inside the environment directory. */
const LMDB_DATA_FILE = 'data.mdb';
const DATA_DB = 'tessera.data';
const META_DB = 'tessera.meta';
const HEADER_KEY = new TextEncoder().encode('header');
const HEADER_MAGIC = new TextEncoder().encode('tessera-lmdb');
const HEADER_BYTES = HEADER_MAGIC.length + 4;
/** LMDB's first meta page: a 24-byte page header, then the magic and the data format version, native-endian. */
const LMDB_MAGIC = 0xbeefc0de;
const LMDB_MAGIC_OFFSET = 24;
const LMDB_DATA_VERSION = 2;
/** A data file holds at least its meta pages. */
const LMDB_MIN_FILE_BYTES = 2 * LMDB_PAGE_SIZE;

export interface LmdbOpenOptions {
  /** The data directory; created when missing. It must be empty or hold a tessera LMDB environment. */
  readonly path: string;
  readonly mapSizeBytes?: number;
  readonly maxReaders?: number;
  /** The write-ahead log's file size (wal.ts, WAL_FILE_BYTES by default); tests make it small. */
  readonly walBytes?: number;
}

export interface Environment {
  readonly root: RootDatabase<Uint8Array, Uint8Array>;
  readonly data: Database<Uint8Array, Uint8Array>;
  /** The data database again, through a handle whose reads give value heads (valueHeadDecoder), never copied values. */
  readonly heads: Database<number, Uint8Array>;
  /** The data database again, for scans: its values come as plain Uint8Arrays (plainValueDecoder). */
  readonly values: Database<Uint8Array, Uint8Array>;
  /** The meta database: the header, and the write-ahead log's generation (engine.ts). */
  readonly meta: Database<Uint8Array, Uint8Array>;
}

/**
 * Copies bytes out of lmdb-js's shared read buffers into new plain
 * Uint8Arrays. lmdb-js's own copy of a key or value is a Buffer (Uint8Array's
 * slice follows Buffer's species), which the engine then had to rewrap as a
 * plain array (engine.ts, plain): two objects per key and per value, most of
 * a scan's time. A plain view of the shared buffer, made once per buffer,
 * slices into plain arrays directly. Keys and values come from different
 * shared buffers, so each has its own copier: one would remake its view at
 * every call.
 */
class PlainCopier {
  private source: Uint8Array | undefined;
  private view: Uint8Array = new Uint8Array(0);

  readonly copy = (source: Uint8Array, start: number, end: number): Uint8Array => {
    if (source !== this.source) {
      this.source = source;
      this.view = new Uint8Array(source.buffer, source.byteOffset, source.byteLength);
    }
    return this.view.slice(start, end);
  };
}

const keyCopier = new PlainCopier();
const valueCopier = new PlainCopier();

/** A binary handle's key reader (lmdb-js's readKey), replaced by one that copies into plain arrays (PlainCopier). */
interface KeyReading {
  readKey: (source: Uint8Array, start: number, end: number) => Uint8Array;
}

function readKeysAsPlainArrays(db: object): void {
  (db as KeyReading).readKey = keyCopier.copy;
}

/** The `values` handle's decoder: lmdb-js hands it its shared buffer (see valueHeadDecoder), and it copies the value out as a plain array. */
const plainValueDecoder = {
  encode(): never {
    throw new AssertionError('the values handle of the data database is read-only');
  },
  decode(bytes: Uint8Array, size: number): Uint8Array {
    return valueCopier.copy(bytes, 0, size);
  },
};

/**
 * The value head a `heads` read left: the first MAX_VALUE_HEAD_BYTES bytes of
 * the last value it read (fewer when the value is shorter), overwritten by
 * the next read. Module-wide because lmdb-js's decoder is per handle, not per
 * read; reads are synchronous, so one visitor call sees its own head.
 */
export const valueHead = new Uint8Array(MAX_VALUE_HEAD_BYTES);

/**
 * lmdb-js hands a decoder that does not ask for a stable buffer
 * (needsStableBuffer) its shared read buffer, uncopied; binary encoding
 * instead copies every value into a new Buffer, which made a scan of a
 * million 300-byte records ~3× slower than one of the keys alone. This
 * decoder copies the head into `valueHead` and returns the value's length.
 */
const valueHeadDecoder = {
  encode(): never {
    throw new AssertionError('the heads handle of the data database is read-only');
  },
  decode(bytes: Uint8Array, size: number): number {
    const n = Math.min(size, MAX_VALUE_HEAD_BYTES);
    for (let i = 0; i < n; i++) valueHead[i] = bytes[i]!;
    return size;
  },
};

/**
 * No read-ahead on page faults (MDB_NORDAHEAD; lmdb-js reads `noReadAhead`,
 * which its typings lack): once the data outgrows the page cache, each
 * random page touched read ahead many more (a 10M-key load at 3.5M keys,
 * three nodes of 8.7 GB on 20 GB of cache, read 0.6-1.3 GB/s from disk and
 * fell from 3500 to about 100 keys/s). LMDB's own advice for such data.
 */
const NO_READ_AHEAD: object = { noReadAhead: true };

export async function openEnvironment(options: LmdbOpenOptions): Promise<Environment> {
  const mapSize = checkLimit('mapSizeBytes', options.mapSizeBytes ?? LMDB_DEFAULT_MAP_SIZE_BYTES, LMDB_MIN_MAP_SIZE_BYTES, LMDB_MAX_MAP_SIZE_BYTES);
  const maxReaders = checkLimit('maxReaders', options.maxReaders ?? LMDB_DEFAULT_MAX_READERS, 1, LMDB_MAX_READERS_LIMIT);
  await prepareDirectory(options.path);
  let root: RootDatabase<Uint8Array, Uint8Array>;
  try {
    root = open<Uint8Array, Uint8Array>({
      path: options.path,
      // Always a directory: lmdb-js would take a path with an extension ('data.d') for a file.
      noSubdir: false,
      keyEncoding: 'binary',
      encoding: 'binary',
      mapSize,
      maxReaders,
      maxDbs: LMDB_MAX_DBS,
      pageSize: LMDB_PAGE_SIZE,
      // LMDB's default durability: a commit syncs its data pages, then its meta page, before it
      // returns (the engine commits synchronously; see engine.ts and ADR 0005).
      overlappingSync: false,
      noSync: false,
      noMetaSync: false,
      ...NO_READ_AHEAD,
    });
  } catch (error) {
    throw new TesseraError('CORRUPT_DATA', `${options.path} cannot be opened as an LMDB environment: ${messageOf(error)}`, { cause: error });
  }
  try {
    const { data, meta } = checkOrCreateHeader(root, options.path);
    const heads = root.openDB<number, Uint8Array>(DATA_DB, { keyEncoding: 'binary', encoder: valueHeadDecoder } as never);
    const values = root.openDB<Uint8Array, Uint8Array>(DATA_DB, { keyEncoding: 'binary', encoder: plainValueDecoder } as never);
    for (const db of [data, heads, values]) readKeysAsPlainArrays(db);
    return { root, data, heads, values, meta };
  } catch (error) {
    await root.close();
    throw error;
  }
}

function checkLimit(name: string, value: number, min: number, max: number): number {
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    throw new TesseraError('INVALID_ARGUMENT', `LMDB option ${name} must be an integer in [${min}, ${max}], got ${value}`);
  }
  return value;
}

async function prepareDirectory(path: string): Promise<void> {
  let names: string[];
  try {
    if (!(await stat(path)).isDirectory()) throw new TesseraError('INVALID_ARGUMENT', `data directory ${path} is not a directory`);
    names = await readdir(path);
  } catch (error) {
    if (!isNotFound(error)) throw asInvalid(error, path);
    await mkdir(path, { recursive: true });
    return;
  }
  if (names.includes(LMDB_DATA_FILE)) return checkDataFile(join(path, LMDB_DATA_FILE));
  if (names.length > 0) {
    throw new TesseraError(
      'INVALID_ARGUMENT',
      `data directory ${path} is not empty and holds no LMDB environment (${LMDB_DATA_FILE}); refusing to write into it`,
    );
  }
}

/**
 * lmdb-js kills the process (SIGSEGV) when handed a data file that is not
 * LMDB's, instead of returning MDB_INVALID, so the file's meta page is checked
 * here first. A damaged file with a valid first page can still get past this.
 */
async function checkDataFile(file: string): Promise<void> {
  const handle = await openFile(file, 'r');
  try {
    const size = (await handle.stat()).size;
    const head = new Uint8Array(LMDB_MAGIC_OFFSET + 8);
    const { bytesRead } = await handle.read(head, 0, head.length, 0);
    const view = new DataView(head.buffer);
    const littleEndian = endianness() === 'LE';
    const valid =
      size >= LMDB_MIN_FILE_BYTES &&
      bytesRead === head.length &&
      view.getUint32(LMDB_MAGIC_OFFSET, littleEndian) === LMDB_MAGIC &&
      view.getUint32(LMDB_MAGIC_OFFSET + 4, littleEndian) === LMDB_DATA_VERSION;
    if (!valid) {
      throw new TesseraError('CORRUPT_DATA', `${file} cannot be opened as an LMDB environment: not an LMDB data file of format ${LMDB_DATA_VERSION}`);
    }
  } finally {
    await handle.close();
  }
}

function checkOrCreateHeader(root: RootDatabase<Uint8Array, Uint8Array>, path: string): { data: Database<Uint8Array, Uint8Array>; meta: Database<Uint8Array, Uint8Array> } {
  // The root database lists the named databases; one of ours is never empty, so an empty root is a new environment.
  const names = [...root.getKeys({ limit: LMDB_MAX_DBS * 4 })].map((k) => Buffer.from(k).toString('latin1').replace(/\0$/, ''));
  if (names.length === 0) {
    const meta = openNamed(root, META_DB, path);
    const data = openNamed(root, DATA_DB, path);
    // Synchronous and synced at once: the header is on disk before the first batch can be.
    root.transactionSync(() => meta.putSync(HEADER_KEY, encodeHeader()));
    return { data, meta };
  }
  if (!names.includes(META_DB)) {
    throw new TesseraError('CORRUPT_DATA', `${path} holds an LMDB environment that is not tessera's (no ${META_DB} database)`);
  }
  const meta = openNamed(root, META_DB, path);
  checkHeader(meta.get(HEADER_KEY), path);
  if (!names.includes(DATA_DB)) throw new TesseraError('CORRUPT_DATA', `${path} has a tessera header but no ${DATA_DB} database`);
  return { data: openNamed(root, DATA_DB, path), meta };
}

function openNamed(root: RootDatabase<Uint8Array, Uint8Array>, name: string, path: string): Database<Uint8Array, Uint8Array> {
  try {
    return root.openDB<Uint8Array, Uint8Array>(name, { keyEncoding: 'binary', encoding: 'binary' });
  } catch (error) {
    throw new TesseraError('CORRUPT_DATA', `${path}: cannot open LMDB database ${name}: ${messageOf(error)}`, { cause: error });
  }
}

function encodeHeader(): Uint8Array {
  const header = new Uint8Array(HEADER_BYTES);
  header.set(HEADER_MAGIC, 0);
  new DataView(header.buffer).setUint32(HEADER_MAGIC.length, LMDB_FORMAT_VERSION);
  return header;
}

function checkHeader(header: Uint8Array | undefined, path: string): void {
  if (header === undefined || header.length !== HEADER_BYTES || !bytesEqual(header.subarray(0, HEADER_MAGIC.length), HEADER_MAGIC)) {
    throw new TesseraError('CORRUPT_DATA', `${path} holds an LMDB environment without a valid tessera header`);
  }
  const version = new DataView(header.buffer, header.byteOffset, header.byteLength).getUint32(HEADER_MAGIC.length);
  if (version !== LMDB_FORMAT_VERSION) {
    throw new TesseraError('CORRUPT_DATA', `${path} was written in tessera LMDB format version ${version}; this build reads only version ${LMDB_FORMAT_VERSION}`);
  }
}

function isNotFound(error: unknown): boolean {
  return typeof error === 'object' && error !== null && (error as { code?: unknown }).code === 'ENOENT';
}

function asInvalid(error: unknown, path: string): TesseraError {
  if (error instanceof TesseraError) return error;
  return new TesseraError('INVALID_ARGUMENT', `data directory ${path} cannot be used: ${messageOf(error)}`, { cause: error });
}

export function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
