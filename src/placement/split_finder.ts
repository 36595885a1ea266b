import { type Clock, type Rng, TesseraError } from '../base/index.js';
import { type KeyInterval, compareBytes } from '../mvcc/index.js';

/**
 * Load-based split key choice, after CockroachDB's load-based splitter
 * (kvserver/split: Decider and its finder). While a range serves more than
 * RANGE_SPLIT_QPS, a reservoir of SPLIT_KEY_SAMPLE_SIZE candidate keys is
 * drawn from the start keys of its requests; every later request counts, for
 * each candidate, whether it would land left of a split there, right of it,
 * or cross it. After a sample window the candidate that best balances left
 * and right, and that the fewest requests cross, is the split key, unless
 * even the best is too lopsided or too often crossed: splitting there would
 * not spread the load, so the answer is "no good key" and why.
 */

/** Requests per second above which a range samples for a load-based split (CockroachDB's default too). */
export const RANGE_SPLIT_QPS = 2500;
/** Candidate keys kept in the reservoir (CockroachDB: splitKeySampleSize). */
export const SPLIT_KEY_SAMPLE_SIZE = 20;
/** Requests a candidate must have counted before its balance is trusted (CockroachDB: splitKeyMinCounter). */
export const SPLIT_KEY_MIN_COUNT = 100;
/** A candidate whose |left - right| / (left + right) reaches this is too lopsided to split at. */
export const SPLIT_MAX_IMBALANCE = 0.25;
/** A candidate crossed by this fraction of requests or more would turn them into two-range requests. */
export const SPLIT_MAX_CROSSING_FRACTION = 0.5;
/** How long a range samples above the threshold before a key is chosen (CockroachDB waits 10 s). */
export const SPLIT_SAMPLE_WINDOW_MS = 10_000;
/** QPS is measured over windows of this length. */
export const QPS_WINDOW_MS = 1_000;

/** A range's bounds: [start, end), `end` undefined reaching the end of the key space. */
export interface RangeBounds {
  readonly start: Uint8Array;
  readonly end: Uint8Array | undefined;
}

/** Where a split key counts a request. */
interface Candidate {
  readonly key: Uint8Array;
  left: number;
  right: number;
  crossing: number;
}

/** A candidate's counts as judged by the finder. */
export interface CandidateScore {
  readonly key: Uint8Array;
  readonly left: number;
  readonly right: number;
  readonly crossing: number;
  /** |left - right| / (left + right); 1 when nothing fell on either side. */
  readonly imbalance: number;
  /** crossing / (left + right + crossing). */
  readonly crossingFraction: number;
}

export type NoSplitReason =
  /** QPS is at or below the threshold: no sampling runs. */
  | 'below-threshold'
  /** Sampling, and the sample window has not elapsed yet. */
  | 'sampling'
  /** No request started strictly inside the range (e.g. every one is a scan from the range start). */
  | 'no-candidates'
  /** No candidate has counted SPLIT_KEY_MIN_COUNT requests yet. */
  | 'too-few-samples'
  /** Every candidate leaves more than the allowed imbalance (e.g. one hot key). */
  | 'imbalanced'
  /** Some candidates balance the load, but too many requests cross each of them. */
  | 'too-many-crossing';

export type SplitKeyChoice =
  | { readonly kind: 'split'; readonly key: Uint8Array; readonly score: CandidateScore }
  /** `best` is the candidate that came closest, when one was judged at all. */
  | { readonly kind: 'none'; readonly reason: NoSplitReason; readonly best?: CandidateScore };

export interface SplitKeyFinderOptions {
  readonly sampleSize?: number;
  readonly minCount?: number;
  readonly maxImbalance?: number;
  readonly maxCrossingFraction?: number;
}

function checkFraction(name: string, v: number): number {
  if (!(v > 0 && v <= 1)) throw new TesseraError('INVALID_CONFIG', `${name} must be in (0, 1], got ${v}`);
  return v;
}

function checkCount(name: string, v: number): number {
  if (!Number.isSafeInteger(v) || v < 1) throw new TesseraError('INVALID_CONFIG', `${name} must be a positive integer, got ${v}`);
  return v;
}

function resolveFinderOptions(options: SplitKeyFinderOptions): Required<SplitKeyFinderOptions> {
  return {
    sampleSize: checkCount('sampleSize', options.sampleSize ?? SPLIT_KEY_SAMPLE_SIZE),
    minCount: checkCount('minCount', options.minCount ?? SPLIT_KEY_MIN_COUNT),
    maxImbalance: checkFraction('maxImbalance', options.maxImbalance ?? SPLIT_MAX_IMBALANCE),
    maxCrossingFraction: checkFraction('maxCrossingFraction', options.maxCrossingFraction ?? SPLIT_MAX_CROSSING_FRACTION),
  };
}

/**
 * The candidate reservoir of one sampling run over one range. Keys are
 * compared as unsigned bytes. Requests are etcd key intervals (KeyInterval:
 * `end` undefined is the single key `start`, an empty `end` every key from
 * `start` on).
 */
export class SplitKeyFinder {
  private readonly candidates: Candidate[] = [];
  /** Requests whose start key could be a candidate: the reservoir's stream length. */
  private eligibleSeen = 0;
  private readonly options: Required<SplitKeyFinderOptions>;

  constructor(
    private readonly bounds: RangeBounds,
    private readonly rng: Rng,
    options: SplitKeyFinderOptions = {},
  ) {
    this.options = resolveFinderOptions(options);
  }

  /** Counts one request against every candidate, then offers its start key to the reservoir. */
  record(request: KeyInterval): void {
    for (const c of this.candidates) countRequest(c, request);
    // A split key must lie strictly inside the range: the range's own start
    // (or a key outside, from a request the router should have clipped)
    // cannot be one. Such requests still counted above.
    if (!this.strictlyInside(request.start)) return;
    this.eligibleSeen++;
    // Reservoir sampling (Algorithm R): each eligible request's key is kept
    // with probability sampleSize / eligibleSeen, so candidates are a uniform
    // sample of the request keys of the whole run. A replaced candidate's
    // counts go with it; the newcomer starts from zero, as in CockroachDB.
    // rng.float() rather than intBelow: the stream may outgrow 2^32.
    const slot = this.candidates.length < this.options.sampleSize ? this.candidates.length : Math.floor(this.rng.float() * this.eligibleSeen);
    if (slot < this.options.sampleSize) this.candidates[slot] = { key: request.start.slice(), left: 0, right: 0, crossing: 0 };
  }

  /** The best split key so far, or why there is none. */
  choose(): SplitKeyChoice {
    if (this.candidates.length === 0) return { kind: 'none', reason: 'no-candidates' };
    let best: CandidateScore | undefined;
    let closest: CandidateScore | undefined; // best rejected, for the record
    let balancedSeen = false;
    for (const c of this.candidates) {
      if (c.left + c.right + c.crossing < this.options.minCount) continue;
      const s = scoreOf(c);
      const balanced = s.imbalance < this.options.maxImbalance;
      balancedSeen ||= balanced;
      if (balanced && s.crossingFraction < this.options.maxCrossingFraction) {
        if (best === undefined || total(s) < total(best)) best = s;
      } else if (closest === undefined || total(s) < total(closest)) {
        closest = s;
      }
    }
    if (best !== undefined) return { kind: 'split', key: best.key, score: best };
    if (closest === undefined) return { kind: 'none', reason: 'too-few-samples' };
    return { kind: 'none', reason: balancedSeen ? 'too-many-crossing' : 'imbalanced', best: closest };
  }

  private strictlyInside(key: Uint8Array): boolean {
    return compareBytes(this.bounds.start, key) < 0 && (this.bounds.end === undefined || compareBytes(key, this.bounds.end) < 0);
  }
}

/** CockroachDB's score: lower is better, balance and crossing weighed alike. */
function total(s: CandidateScore): number {
  return s.imbalance + s.crossingFraction;
}

function scoreOf(c: Candidate): CandidateScore {
  const sides = c.left + c.right;
  return {
    key: c.key,
    left: c.left,
    right: c.right,
    crossing: c.crossing,
    imbalance: sides === 0 ? 1 : Math.abs(c.left - c.right) / sides,
    crossingFraction: c.crossing / (sides + c.crossing),
  };
}

/**
 * Where a split at `c.key` puts `request`: a request that starts at or after
 * the key goes right; one that ends at or before it goes left; one that
 * starts before and ends after it crosses (it would need both ranges). A
 * single key [k, k\0) never crosses: no key lies strictly between k and k\0.
 */
function countRequest(c: Candidate, request: KeyInterval): void {
  if (compareBytes(c.key, request.start) <= 0) {
    c.right++;
  } else if (request.end !== undefined && (request.end.length === 0 || compareBytes(c.key, request.end) < 0)) {
    c.crossing++;
  } else {
    c.left++;
  }
}

export interface LoadSplitDeciderOptions extends SplitKeyFinderOptions {
  readonly clock: Clock;
  readonly rng: Rng;
  readonly qpsThreshold?: number;
  readonly sampleWindowMs?: number;
}

/**
 * The per-range driver: measures QPS and runs a SplitKeyFinder while QPS is
 * above the threshold, dropping it as soon as load falls back (a sample from
 * a past burst says little about the next one). One decider serves one
 * range's bounds; after a split or merge, make new ones for the new ranges.
 */
export class LoadSplitDecider {
  private readonly clock: Clock;
  private readonly rng: Rng;
  private readonly qpsThreshold: number;
  private readonly sampleWindowMs: number;
  private readonly finderOptions: SplitKeyFinderOptions;
  private qpsWindowStartMs: number;
  private qpsWindowCount = 0;
  private lastQps = 0;
  private finder: SplitKeyFinder | undefined;
  private finderStartMs = 0;
  private last: SplitKeyChoice = { kind: 'none', reason: 'below-threshold' };

  constructor(
    private readonly bounds: RangeBounds,
    options: LoadSplitDeciderOptions,
  ) {
    this.clock = options.clock;
    this.rng = options.rng;
    this.qpsThreshold = options.qpsThreshold ?? RANGE_SPLIT_QPS;
    this.sampleWindowMs = options.sampleWindowMs ?? SPLIT_SAMPLE_WINDOW_MS;
    if (!(this.qpsThreshold >= 0)) throw new TesseraError('INVALID_CONFIG', `qpsThreshold must be ≥ 0, got ${this.qpsThreshold}`);
    if (!(this.sampleWindowMs >= 0)) throw new TesseraError('INVALID_CONFIG', `sampleWindowMs must be ≥ 0, got ${this.sampleWindowMs}`);
    // Resolved now so a bad option fails at construction, not at the first burst.
    this.finderOptions = resolveFinderOptions(options);
    this.qpsWindowStartMs = this.clock.nowMs();
  }

  /** Records one request served by the range. */
  record(request: KeyInterval): void {
    const nowMs = this.clock.nowMs();
    this.rollQps(nowMs);
    this.qpsWindowCount++;
    if (this.finder === undefined) {
      if (this.lastQps <= this.qpsThreshold) return;
      this.finder = new SplitKeyFinder(this.bounds, this.rng, this.finderOptions);
      this.finderStartMs = nowMs;
    }
    this.finder.record(request);
  }

  /** The QPS of the last complete measuring window. */
  qps(): number {
    this.rollQps(this.clock.nowMs());
    return this.lastQps;
  }

  /** Whether to split now, and where; the answer is also kept as `lastDecision` (why a hot range did not split). */
  decide(): SplitKeyChoice {
    const nowMs = this.clock.nowMs();
    this.rollQps(nowMs);
    if (this.finder === undefined) this.last = { kind: 'none', reason: 'below-threshold' };
    else if (nowMs - this.finderStartMs < this.sampleWindowMs) this.last = { kind: 'none', reason: 'sampling' };
    else this.last = this.finder.choose();
    return this.last;
  }

  get lastDecision(): SplitKeyChoice {
    return this.last;
  }

  private rollQps(nowMs: number): void {
    const elapsedMs = nowMs - this.qpsWindowStartMs;
    if (elapsedMs < QPS_WINDOW_MS) return;
    // Over the whole elapsed time: after an idle gap the rate is low, as it was.
    this.lastQps = (this.qpsWindowCount * 1000) / elapsedMs;
    this.qpsWindowCount = 0;
    this.qpsWindowStartMs = nowMs;
    if (this.lastQps <= this.qpsThreshold) this.finder = undefined;
  }
}
