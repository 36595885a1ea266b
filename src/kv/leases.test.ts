import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Clock } from '../base/index.js';
import { LeaseKeeper } from './lease_keeper.js';
import type { CommandResult } from './mvcc_state_machine.js';
import { Harness, RANGE } from './testing.testlib.js';

const enc = new TextEncoder();

/** A LeaseKeeper per node on a shared fake clock, and a way to tick them all. */
function withKeepers(h: Harness, clock: Clock): { keepers: Map<number, LeaseKeeper>; tickKeepers: () => void } {
  const keepers = new Map(
    h.ids.map((id) => [id, new LeaseKeeper({ store: h.stores.get(id)!, rangeId: RANGE, leases: () => h.sms.get(id)!.leases, clock, requestIdPrefix: `n${id}`, checkpointIntervalMs: 1000 })]),
  );
  const tickKeepers = (): void => {
    for (const k of keepers.values()) k.tick();
    h.settle();
  };
  return { keepers, tickKeepers };
}

function putWithLease(h: Harness, requestId: string, key: string, lease: number, done: (r: CommandResult) => void): void {
  const txn = { compare: [], success: [{ type: 'put' as const, put: { key: enc.encode(key), value: enc.encode('v'), lease } }], failure: [] };
  h.command(h.leader(), { kind: 'txn', requestId, txn }, done);
  h.settle();
}

test('leases: grant, attach keys, revoke deletes them in one revision', () => {
  const h = new Harness([1]);
  h.tickAll(30);
  const results: CommandResult[] = [];
  h.command(h.leader(), { kind: 'lease-grant', requestId: 'g', id: 7, ttlSeconds: 10 }, (r) => results.push(r));
  h.settle();
  putWithLease(h, 'p1', 'a', 7, (r) => results.push(r));
  putWithLease(h, 'p2', 'b', 7, (r) => results.push(r));
  putWithLease(h, 'p3', 'c', 0, (r) => results.push(r));
  const sm = h.sms.get(1);
  assert.deepEqual(sm?.leases.keysOf(7), ['a', 'b']);
  h.command(h.leader(), { kind: 'lease-revoke', requestId: 'r', id: 7 }, (r) => results.push(r));
  h.settle();
  const revoke = results[results.length - 1];
  assert.ok(revoke !== undefined && revoke.kind === 'lease-revoke');
  assert.equal(revoke.events.length, 2);
  assert.ok(revoke.events.every((e) => e.type === 'DELETE' && e.kv.modRevision === revoke.revision));
  assert.equal(h.value(1, 'a'), undefined);
  assert.equal(h.value(1, 'c'), 'v');
  assert.equal(sm?.leases.has(7), false);
});

test('leases: a put naming an unknown lease is refused; granting an existing id is refused', () => {
  const h = new Harness([1]);
  h.tickAll(30);
  const results: CommandResult[] = [];
  putWithLease(h, 'p', 'a', 99, (r) => results.push(r));
  h.command(h.leader(), { kind: 'lease-grant', requestId: 'g1', id: 5, ttlSeconds: 10 }, (r) => results.push(r));
  h.command(h.leader(), { kind: 'lease-grant', requestId: 'g2', id: 5, ttlSeconds: 10 }, (r) => results.push(r));
  h.settle();
  assert.deepEqual(
    results.map((r) => (r.kind === 'error' ? r.code : r.kind)),
    ['LEASE_NOT_FOUND', 'lease-grant', 'LEASE_EXIST'],
  );
  assert.equal(h.value(1, 'a'), undefined);
});

test('leases: attachments and records survive a restart (rebuilt from storage)', () => {
  const h = new Harness([1]);
  h.tickAll(30);
  h.command(h.leader(), { kind: 'lease-grant', requestId: 'g', id: 3, ttlSeconds: 60 }, () => {});
  h.settle();
  putWithLease(h, 'p', 'k', 3, () => {});
  h.tickAll(2);
  h.stores.get(1)?.close();
  h.start(1);
  assert.deepEqual(h.sms.get(1)?.leases.keysOf(3), ['k']);
  assert.equal(h.sms.get(1)?.leases.get(3)?.ttlSeconds, 60);
});

test('LeaseKeeper: an expired lease is revoked by the leader; keep-alive postpones it; followers refuse keep-alives', () => {
  const h = new Harness([1, 2, 3]);
  let now = 0;
  h.tickAll(40);
  const { keepers, tickKeepers } = withKeepers(h, { nowMs: () => now });
  h.command(h.leader(), { kind: 'lease-grant', requestId: 'g', id: 1, ttlSeconds: 5 }, () => {});
  h.settle();
  putWithLease(h, 'p', 'x', 1, () => {});
  h.tickAll(3);
  tickKeepers();
  const leaderId = h.leader().nodeId;
  now = 3000;
  assert.equal(keepers.get(leaderId)?.keepAlive(1), 5);
  now = 6000;
  tickKeepers();
  assert.equal(h.value(leaderId, 'x'), 'v', 'kept alive at 3s, so alive at 6s');
  // A checkpoint has recorded the remaining time; a follower refuses keep-alives.
  const follower = [1, 2, 3].find((id) => id !== leaderId) as number;
  assert.throws(() => keepers.get(follower)?.keepAlive(1), /not leader/);
  h.tickAll(3);
  assert.ok((h.sms.get(follower)?.leases.get(1)?.remainingMs ?? 0) > 0, 'remaining time was checkpointed');
  now = 8500;
  tickKeepers();
  h.tickAll(3);
  for (const id of [1, 2, 3]) assert.equal(h.value(id, 'x'), undefined, `key gone on node ${id} after expiry`);
});

test('LeaseKeeper: a lease\'s remaining time survives a leader change (checkpointed)', () => {
  const h = new Harness([1, 2, 3]);
  let now = 0;
  h.tickAll(40);
  const { keepers, tickKeepers } = withKeepers(h, { nowMs: () => now });
  h.command(h.leader(), { kind: 'lease-grant', requestId: 'g', id: 1, ttlSeconds: 100 }, () => {});
  h.settle();
  tickKeepers();
  now = 40_000; // 60 s left
  tickKeepers(); // checkpoint: remaining 60 s
  h.tickAll(3);
  const old = h.leader().nodeId;
  const next = [1, 2, 3].find((id) => id !== old) as number;
  h.stores.get(old)?.transferLeader(RANGE, next);
  h.settle();
  h.tickAll(20);
  assert.equal(h.leader().nodeId, next);
  tickKeepers();
  const remaining = keepers.get(next)?.remainingSeconds(1) ?? 0;
  assert.ok(remaining <= 60 && remaining > 50, `new leader starts from the checkpoint, got ${remaining}s (full TTL would be 100)`);
});
