import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isTesseraError } from '../base/index.js';
import { parseEdnKvLog, parseJepsenEtcdLog } from './index.js';
import { parseEdnMap } from './parse/edn.js';

const line = (p: number, type: string, f: string, arg: string) => `INFO  jepsen.util - ${p}\t:${type}\t:${f}\t${arg}`;
const isParseError = (e: unknown) => isTesseraError(e, 'PARSE_ERROR');

test('jepsen etcd: completions, definite and unknown outcomes', () => {
  const text = [
    line(0, 'invoke', 'write', '3'),
    line(1, 'invoke', 'read', 'nil'),
    line(0, 'ok', 'write', '3'),
    line(1, 'ok', 'read', 'nil'),
    line(2, 'invoke', 'cas', '[3 4]'),
    line(2, 'fail', 'cas', '[3 4]'),
    line(3, 'invoke', 'write', '1'),
    line(3, 'info', 'write', ':timed-out'),
    'INFO  jepsen.util - 4   :invoke :read   nil', // spaces instead of tabs occur in the data
    line(4, 'fail', 'read', ':timed-out'),
    line(5, 'invoke', 'cas', '[1 2]'),
    '',
  ].join('\n');
  const ops = parseJepsenEtcdLog(text);
  assert.deepEqual(ops, [
    { clientId: 0, input: { kind: 'write', value: 3 }, output: { kind: 'ok' }, callMs: 0, returnMs: 2 },
    { clientId: 1, input: { kind: 'read' }, output: { kind: 'ok', value: null }, callMs: 1, returnMs: 3 },
    { clientId: 2, input: { kind: 'cas', from: 3, to: 4 }, output: { kind: 'ok', succeeded: false }, callMs: 4, returnMs: 5 },
    { clientId: 3, input: { kind: 'write', value: 1 }, output: { kind: 'unknown' }, callMs: 6, returnMs: Infinity },
    { clientId: 4, input: { kind: 'read' }, output: { kind: 'unknown' }, callMs: 8, returnMs: Infinity },
    { clientId: 5, input: { kind: 'cas', from: 1, to: 2 }, output: { kind: 'unknown' }, callMs: 10, returnMs: Infinity },
  ]);
});

test('jepsen etcd: malformed or inconsistent logs are parse errors with a line number', () => {
  assert.throws(() => parseJepsenEtcdLog('hello'), isParseError);
  assert.throws(() => parseJepsenEtcdLog(line(0, 'ok', 'read', '1')), /1: process 0 completes/);
  assert.throws(() => parseJepsenEtcdLog([line(0, 'invoke', 'read', 'nil'), line(0, 'invoke', 'read', 'nil')].join('\n')), /2: process 0 invokes/);
  assert.throws(() => parseJepsenEtcdLog([line(0, 'invoke', 'read', 'nil'), line(0, 'ok', 'write', '1')].join('\n')), isParseError);
  assert.throws(() => parseJepsenEtcdLog(line(0, 'invoke', 'cas', '[1]')), isParseError);
});

test('edn kv: gets, puts, appends; nil reads as ""; fail drops, info is unknown', () => {
  const text = [
    '{:process 0, :type :invoke, :f :append, :key "4", :value "x 0 1 y"}',
    '{:process 1, :type :invoke, :f :get, :key "4", :value nil}',
    '{:process 0, :type :ok, :f :append, :key "4", :value "x 0 1 y"}',
    '{:process 1, :type :ok, :f :get, :key "4", :value nil}',
    '{:process 2, :type :invoke, :f :put, :key "a\\"b", :value "v"}',
    '{:process 2, :type :fail, :f :put, :key "a\\"b", :value "v"}',
    '{:process 3, :type :invoke, :f :put, :key "k", :value "w"}',
    '{:process 3, :type :info, :f :put, :key "k", :value "w"}',
  ].join('\n');
  assert.deepEqual(parseEdnKvLog(text), [
    { clientId: 0, input: { kind: 'append', key: '4', value: 'x 0 1 y' }, output: { kind: 'ok' }, callMs: 0, returnMs: 2 },
    { clientId: 1, input: { kind: 'get', key: '4' }, output: { kind: 'ok', value: '' }, callMs: 1, returnMs: 3 },
    { clientId: 3, input: { kind: 'put', key: 'k', value: 'w' }, output: { kind: 'unknown' }, callMs: 6, returnMs: Infinity },
  ]);
  assert.throws(() => parseEdnKvLog('{:process 0, :type :invoke, :f :cas, :key "1"}'), isParseError);
  assert.throws(() => parseEdnKvLog('{:process 0 :type'), isParseError);
});

test('edn map reader: scalars, escapes, commas as whitespace', () => {
  const m = parseEdnMap('{:a 1, :b -2 :c "q\\"\\\\\\n" :d nil, :e :kw :f true}');
  assert.deepEqual([...m], [
    ['a', 1],
    ['b', -2],
    ['c', 'q"\\\n'],
    ['d', null],
    ['e', { keyword: 'kw' }],
    ['f', true],
  ]);
  assert.throws(() => parseEdnMap('{:a "open'));
  assert.throws(() => parseEdnMap('{"k" 1}'));
  assert.throws(() => parseEdnMap('{:a 1} extra'));
});
