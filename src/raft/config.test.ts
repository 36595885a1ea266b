import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SeededRng, isTesseraError } from '../base/index.js';
import { DEFAULT_RAFT_OPTIONS, type RaftConfig, leaseTicks, validateRaftConfig } from './config.js';
import { MemoryLogStorage } from './storage.js';

function config(fields: Partial<RaftConfig> = {}): RaftConfig {
  return { ...DEFAULT_RAFT_OPTIONS, id: 1, storage: new MemoryLogStorage(), rng: new SeededRng(1), ...fields };
}

function assertRule(fields: Partial<RaftConfig>, message: string): void {
  assert.throws(() => validateRaftConfig(config(fields)), (err: unknown) => {
    assert.ok(isTesseraError(err, 'INVALID_CONFIG'), String(err));
    assert.equal(err.message, `invalid raft config: ${message}`);
    return true;
  });
}

test('validateRaftConfig accepts the defaults', () => {
  validateRaftConfig(config());
  validateRaftConfig(config({ readOnlyOption: 'lease-based', checkQuorum: true }));
  validateRaftConfig(config({ maxInflightBytes: 0, maxUncommittedEntriesSizeBytes: 0, maxClockDriftRatio: 0 }));
});

test('validateRaftConfig: ids and tick counts', () => {
  assertRule({ id: 0 }, 'id must be a positive integer (0 means none), got 0');
  assertRule({ id: 1.5 }, 'id must be a positive integer (0 means none), got 1.5');
  assertRule({ heartbeatIntervalTicks: 0 }, 'heartbeatIntervalTicks must be a positive integer, got 0');
  assertRule({ electionTimeoutTicks: -3 }, 'electionTimeoutTicks must be a positive integer, got -3');
  assertRule({ electionTimeoutTicks: 2, heartbeatIntervalTicks: 2 }, 'electionTimeoutTicks (2) must be greater than heartbeatIntervalTicks (2)');
});

test('validateRaftConfig: message and flow-control limits', () => {
  assertRule({ maxSizePerMsgBytes: 0 }, 'maxSizePerMsgBytes must be a positive integer, got 0');
  assertRule({ maxCommittedSizePerReadyBytes: 0 }, 'maxCommittedSizePerReadyBytes must be a positive integer, got 0');
  assertRule({ maxInflightMsgs: 0 }, 'maxInflightMsgs must be a positive integer, got 0');
  assertRule({ maxInflightBytes: -1 }, 'maxInflightBytes must be ≥ 0');
  assertRule({ maxInflightBytes: 100, maxSizePerMsgBytes: 1000 }, 'maxInflightBytes (100) must be ≥ maxSizePerMsgBytes (1000) so one full message fits');
  assertRule({ maxUncommittedEntriesSizeBytes: -1 }, 'maxUncommittedEntriesSizeBytes must be ≥ 0');
  assertRule({ appliedIndex: -1 }, 'appliedIndex must be ≥ 0, got -1');
});

test('validateRaftConfig: lease reads need CheckQuorum, a drift bound below 0.5, and a lease of at least one tick', () => {
  assertRule({ readOnlyOption: 'lease-based', checkQuorum: false }, "readOnlyOption 'lease-based' requires checkQuorum, or a deposed leader would keep serving reads");
  assertRule({ maxClockDriftRatio: 0.5 }, 'maxClockDriftRatio must be in [0, 0.5), got 0.5');
  assertRule({ maxClockDriftRatio: Number.NaN }, 'maxClockDriftRatio must be in [0, 0.5), got NaN');
  assertRule(
    { readOnlyOption: 'lease-based', checkQuorum: true, electionTimeoutTicks: 2, heartbeatIntervalTicks: 1 },
    'electionTimeoutTicks 2 is too short for lease reads with maxClockDriftRatio 0.1',
  );
});

test('leaseTicks: electionTimeout × (1 − d)/(1 + d), rounded down, minus one tick', () => {
  assert.equal(leaseTicks({ electionTimeoutTicks: 10, maxClockDriftRatio: 0.1 }), 7);
  assert.equal(leaseTicks({ electionTimeoutTicks: 10, maxClockDriftRatio: 0 }), 9);
  assert.equal(leaseTicks({ electionTimeoutTicks: 20, maxClockDriftRatio: 0.4 }), 7);
  // The lease always ends strictly before a follower's vote refusal (electionTimeout) would.
  for (const d of [0, 0.05, 0.1, 0.25, 0.49]) {
    for (const et of [3, 10, 17, 100]) assert.ok(leaseTicks({ electionTimeoutTicks: et, maxClockDriftRatio: d }) < et);
  }
});
