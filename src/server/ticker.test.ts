import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isTesseraError } from '../base/index.js';
import { Ticker } from './ticker.js';

test('ticker: ticks follow elapsed monotonic time, and a pause is caught up in full', () => {
  let now = 1_000;
  let ticks = 0;
  const catchUps: number[] = [];
  const t = new Ticker({ tickMs: 100, tick: (n) => (ticks += n), onCatchUp: (n) => catchUps.push(n), now: () => now });
  now += 250;
  assert.equal(t.catchUp(), 2);
  now += 10;
  assert.equal(t.catchUp(), 0, 'no tick before a whole tick has passed');
  now += 40;
  assert.equal(t.catchUp(), 1);
  // A 5 s pause (SIGSTOP, a blocked event loop): all 50 ticks are delivered at once, and reported.
  now += 5_000;
  assert.equal(t.catchUp(), 50);
  assert.equal(ticks, 53);
  assert.equal(t.ticks, 53);
  assert.deepEqual(catchUps, [50]);
  assert.throws(() => new Ticker({ tickMs: 0, tick: () => {} }), (e) => isTesseraError(e, 'INVALID_CONFIG'));
});
