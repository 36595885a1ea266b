import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TesseraError } from '../base/index.js';
import type { MvccEvent } from '../mvcc/index.js';
import type { EventsPage, ForwardOp } from './forward.js';
import { FEED_IDLE_MS, FEED_WAIT_MS, FEED_WINDOW_MAX_BYTES, type RemoteRange, RemoteFeeds, pageProblem } from './remote_feed.js';
import { ManualTimers } from '../base/manual_timers.testlib.js';

const enc = new TextEncoder();
const bytes = (s: string): Uint8Array => enc.encode(s);
const text = (b: Uint8Array): string => new TextDecoder().decode(b);


const put = (key: string, rev: number, value = `v${rev}`): MvccEvent => ({ type: 'PUT', kv: { key: bytes(key), value: bytes(value), createRevision: rev, modRevision: rev, version: 1, lease: 0 } });
const settle = async (): Promise<void> => {
  for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
};

interface Call {
  readonly to: number;
  readonly op: Extract<ForwardOp, { op: 'events' }>;
  readonly resolve: (page: EventsPage) => void;
  readonly reject: (error: Error) => void;
}

/** A feed over range 7 with bounds and holders the test changes, and the calls it made, answered by hand. */
function setup(): { feeds: RemoteFeeds; timers: ManualTimers; calls: Call[]; target: { value: RemoteRange | undefined }; data: { n: number } } {
  const timers = new ManualTimers();
  const calls: Call[] = [];
  const target: { value: RemoteRange | undefined } = { value: { bounds: { start: bytes('b'), end: bytes('m') }, holders: [2, 3] } };
  const data = { n: 0 };
  const feeds = new RemoteFeeds({
    timers,
    locate: (id) => (id === 7 ? target.value : undefined),
    call: (to, _rangeId, op, _timeoutMs) => new Promise((resolve, reject) => calls.push({ to, op: op as Call['op'], resolve: resolve as (p: EventsPage) => void, reject })),
    callTimeoutMs: 1_000,
    onData: () => void data.n++,
  });
  return { feeds, timers, calls, target, data };
}

const all = { key: bytes('a'), rangeEnd: new Uint8Array([0]) };

test('remote feed: starts at the revision a watcher wants, long-polls a holder, and serves the changes of the range\'s keys up to its current revision', async () => {
  const { feeds, calls, data } = setup();
  const feed = feeds.feed(7);
  assert.ok(feed !== undefined);
  assert.equal(feed.currentRevision, 0);
  feed.want(5, false);
  await settle();
  assert.equal(calls.length, 1);
  const first = calls[0] as Call;
  assert.equal(first.op.fromRevision, 5);
  assert.equal(first.op.waitMs, FEED_WAIT_MS);
  assert.equal(text(first.op.key), 'b');
  assert.equal(text(first.op.rangeEnd as Uint8Array), 'm');
  // Nothing yet at the holder: no progress.
  assert.deepEqual(feed.events({ fromRevision: 5, ...all }), { events: [], nextRevision: 5 });
  first.resolve({ events: [put('c', 5), put('d', 7), put('e', 7)], nextRevision: 9, currentRevision: 8, compactedRevision: 2 });
  await settle();
  assert.equal(data.n, 1);
  assert.equal(feed.currentRevision, 8);
  assert.equal(feed.compactedRevision, 2);
  const r = feed.events({ fromRevision: 5, ...all });
  assert.deepEqual(r.events.map((e) => `${text(e.kv.key)}@${e.kv.modRevision}`), ['c@5', 'd@7', 'e@7']);
  assert.equal(r.nextRevision, 9);
  // toRevision and a single key.
  assert.deepEqual(feed.events({ fromRevision: 6, key: bytes('d'), toRevision: 7 }).events.map((e) => text(e.kv.key)), ['d']);
  assert.equal(feed.events({ fromRevision: 6, ...all, toRevision: 6 }).nextRevision, 7);
  // A scan limit stops at a revision boundary, never inside a revision.
  const limited = feed.events({ fromRevision: 5, ...all, scanLimit: 2 });
  assert.deepEqual(limited.events.map((e) => e.kv.modRevision), [5, 7, 7]);
  const one = feed.events({ fromRevision: 5, ...all, scanLimit: 1 });
  assert.deepEqual(one.events.map((e) => e.kv.modRevision), [5]);
  assert.equal(one.nextRevision, 7);
  // The next long poll continues where the window ends.
  assert.equal((calls[1] as Call).op.fromRevision, 9);
  feeds.close();
});

test('remote feed: a split narrows what it serves at once; a merge that adds keys starts the window again', async () => {
  const { feeds, calls, target } = setup();
  const feed = feeds.feed(7)!;
  feed.want(3, false);
  await settle();
  calls[0]!.resolve({ events: [put('c', 3), put('k', 4)], nextRevision: 5, currentRevision: 4, compactedRevision: 0 });
  await settle();
  // Split at j: keys from j on are another range's, whose own source gives them.
  target.value = { bounds: { start: bytes('b'), end: bytes('j') }, holders: [2, 3] };
  assert.deepEqual(feed.events({ fromRevision: 3, ...all }).events.map((e) => text(e.kv.key)), ['c']);
  // Merged with the range after it: the window lacks the new keys' history, so it starts again from its low end.
  target.value = { bounds: { start: bytes('b'), end: bytes('z') }, holders: [2] };
  assert.deepEqual(feed.events({ fromRevision: 3, ...all }), { events: [], nextRevision: 3 });
  assert.equal(feed.currentRevision, 2);
  calls[1]!.resolve({ events: [put('q', 9)], nextRevision: 10, currentRevision: 9, compactedRevision: 0 }); // the poll made before the merge
  await settle();
  assert.equal(feed.currentRevision, 2, 'an answer to a fetch made before the window started again is dropped');
  const again = calls.find((c) => c.op.fromRevision === 3 && text(c.op.rangeEnd as Uint8Array) === 'z');
  assert.ok(again !== undefined, 'fetched again over the merged bounds from the low end');
  feeds.close();
});

test('remote feed: a watcher below the window, or wanting previous values it lacks, starts it again; compacted history restarts at the compaction', async () => {
  const { feeds, calls } = setup();
  const feed = feeds.feed(7)!;
  feed.want(10, false);
  await settle();
  calls[0]!.resolve({ events: [put('c', 10)], nextRevision: 11, currentRevision: 10, compactedRevision: 0 });
  await settle();
  feed.want(4, false);
  assert.equal(feed.currentRevision, 3);
  await settle();
  const low = calls.find((c) => c.op.fromRevision === 4);
  assert.ok(low !== undefined);
  low.resolve({ events: [], nextRevision: 4, currentRevision: 12, compactedRevision: 6 });
  await settle();
  assert.equal(feed.compactedRevision, 6);
  assert.equal(feed.currentRevision, 5, 'starts again at the compacted revision');
  feed.want(6, true);
  await settle();
  const withPrev = calls.find((c) => c.op.prevKv);
  assert.ok(withPrev !== undefined && withPrev.op.fromRevision === 6);
  feeds.close();
});

test('remote feed: a failed fetch asks the next holder after a pause; a page out of order is refused; an unread feed is dropped', async () => {
  const { feeds, calls, timers, target } = setup();
  const feed = feeds.feed(7)!;
  feed.want(1, false);
  await settle();
  assert.equal(calls[0]!.to, 2);
  calls[0]!.reject(new TesseraError('RANGE_MISMATCH', 'moved'));
  await settle();
  assert.equal(calls.length, 1, 'waits before asking again');
  timers.advance(100);
  await settle();
  assert.equal(calls[1]!.to, 3, 'the next holder');
  calls[1]!.resolve({ events: [put('c', 3), put('d', 2)], nextRevision: 4, currentRevision: 3, compactedRevision: 0 });
  await settle();
  assert.equal(feed.currentRevision, 0, 'out of order: refused');
  assert.equal(pageProblem(1, { events: [put('zz', 1)], nextRevision: 2, currentRevision: 1, compactedRevision: 0 }, target.value!.bounds), 'a change to a key outside the range');
  assert.match(pageProblem(1, { events: [], nextRevision: 9, currentRevision: 3, compactedRevision: 0 }, target.value!.bounds) ?? '', /past the current revision/);
  // Nobody reads it: dropped once its idle time passes.
  timers.advance(FEED_IDLE_MS + 1);
  calls[2]!.resolve({ events: [], nextRevision: 1, currentRevision: 0, compactedRevision: 0 });
  await settle();
  assert.equal(feeds.size, 0);
});

test('remote feed: a close request sends a short fetch that closes the range first; the window stays within its byte budget', async () => {
  const { feeds, calls } = setup();
  const feed = feeds.feed(7)!;
  feed.want(1, false);
  await settle();
  feed.requestClose(50);
  await settle();
  const close = calls.find((c) => c.op.closeTo === 50);
  assert.ok(close !== undefined && close.op.waitMs === 0);
  const big = 'x'.repeat(1024 * 1024);
  const events = Array.from({ length: 12 }, (_, i) => put('c', i + 1, big));
  close.resolve({ events, nextRevision: 51, currentRevision: 50, compactedRevision: 0 });
  await settle();
  assert.equal(feed.currentRevision, 50);
  const kept = feed.events({ fromRevision: 1, ...all });
  assert.deepEqual(kept, { events: [], nextRevision: 1 }, 'the oldest went past the budget: below the window now');
  // The window's low end: the first revision it answers from; from there on it holds every change, within the budget.
  let low = 1;
  while (low <= 12 && feed.events({ fromRevision: low, ...all }).events.length === 0) low++;
  const tail = feed.events({ fromRevision: low, ...all }).events;
  assert.deepEqual(tail.map((e) => e.kv.modRevision), Array.from({ length: 13 - low }, (_, i) => low + i));
  assert.ok(tail.length >= 6 && tail.reduce((n, e) => n + e.kv.value.byteLength, 0) <= FEED_WINDOW_MAX_BYTES);
  feeds.close();
});
