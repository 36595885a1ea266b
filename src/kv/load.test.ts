import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LOAD_WINDOW_SECONDS, LoadMeter } from './load.js';

test('load: the rate is the mean over the window, and old seconds fall out of it', () => {
  let now = 5_000;
  const meter = new LoadMeter({ nowMs: () => now });
  assert.equal(meter.qps(), 0);
  for (let s = 0; s < LOAD_WINDOW_SECONDS; s++) {
    meter.record(100);
    now += 1000;
  }
  // Ten full seconds of 100 each; the current second is empty, so the oldest one has fallen out.
  assert.equal(meter.qps(), (100 * (LOAD_WINDOW_SECONDS - 1)) / LOAD_WINDOW_SECONDS);
  now += 3_000;
  assert.equal(meter.qps(), (100 * (LOAD_WINDOW_SECONDS - 4)) / LOAD_WINDOW_SECONDS);
  now += 60_000;
  assert.equal(meter.qps(), 0, 'a quiet minute empties every bucket');
  meter.record(7);
  assert.equal(meter.qps(), 7 / LOAD_WINDOW_SECONDS);
});
