import assert from 'node:assert/strict';
import { test } from 'node:test';
import { HpackDecoder, HpackError, encodeHeaderBlock, huffmanCodes, huffmanDecode } from './hpack.js';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

test('Huffman codes follow RFC 7541 Appendix B', () => {
  const codes = huffmanCodes();
  assert.equal(codes.length, 257);
  assert.deepEqual(codes[0], [0x1ff8, 13]);
  assert.deepEqual(codes[32], [0x14, 6]);
  assert.deepEqual(codes[48], [0x0, 5]);
  assert.deepEqual(codes[97], [0x3, 5]);
  assert.deepEqual(codes[10], [0x3ffffffc, 30]);
  assert.deepEqual(codes[255], [0x3ffffee, 26]);
  assert.deepEqual(codes[256], [0x3fffffff, 30]);
});

test('Huffman strings from RFC 7541 Appendix C decode', () => {
  assert.equal(huffmanDecode(hex('f1e3 c2e5 f23a 6ba0 ab90 f4ff')), 'www.example.com');
  assert.equal(huffmanDecode(hex('a8eb 1064 9cbf')), 'no-cache');
  assert.equal(huffmanDecode(hex('25a8 49e9 5bb8 e8b4 bf')), 'custom-value');
  assert.equal(huffmanDecode(hex('d07a be94 1054 d444 a820 0595 040b 8166 e082 a62d 1bff')), 'Mon, 21 Oct 2013 20:13:21 GMT');
  assert.equal(huffmanDecode(hex('9d29 ad17 1863 c78f 0b97 c8e9 ae82 ae43 d3')), 'https://www.example.com');
  assert.throws(() => huffmanDecode(hex('f1e3 c2e5 f23a 6ba0 ab90 f4')), HpackError, 'padding of zeros');
  assert.throws(() => huffmanDecode(hex('ff ff ff ff')), HpackError, 'EOS');
});

test('the request examples of RFC 7541 C.4 decode in sequence, with the dynamic table', () => {
  const d = new HpackDecoder();
  assert.deepEqual(d.decode(hex('8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff')), [
    [':method', 'GET'], [':scheme', 'http'], [':path', '/'], [':authority', 'www.example.com'],
  ]);
  assert.deepEqual(d.decode(hex('8286 84be 5886 a8eb 1064 9cbf')), [
    [':method', 'GET'], [':scheme', 'http'], [':path', '/'], [':authority', 'www.example.com'], ['cache-control', 'no-cache'],
  ]);
  assert.deepEqual(d.decode(hex('8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf')), [
    [':method', 'GET'], [':scheme', 'https'], [':path', '/index.html'], [':authority', 'www.example.com'], ['custom-key', 'custom-value'],
  ]);
});

test('table size updates evict; bad indexes and truncation are errors', () => {
  const d = new HpackDecoder();
  d.decode(hex('4188 f1e3 c2e5 f23a 6ba0 ab90 f4ff'.replace('4188', '418c')));
  assert.deepEqual(d.decode(hex('be')), [[':authority', 'www.example.com']]);
  d.decode(hex('20'));
  assert.throws(() => d.decode(hex('be')), HpackError);
  assert.throws(() => d.decode(hex('3fe2 1f')), HpackError, 'size above the limit');
  assert.throws(() => d.decode(hex('80')), HpackError);
  assert.throws(() => d.decode(hex('41 8c f1e3')), HpackError);
  assert.throws(() => d.decode(hex('ff ff ff ff ff 0f')), HpackError);
});

test('encoded blocks decode back, leaving the dynamic table alone', () => {
  const fields = [[':authority', '127.0.0.1:2379'], [':path', '/etcdserverpb.KV/Range'], ['x-bin', '\u0000\u00ff\u0080']] as const;
  const d = new HpackDecoder();
  const long = 'v'.repeat(300);
  assert.deepEqual(d.decode(encodeHeaderBlock([...fields, ['k', long]])), [...fields, ['k', long]]);
  assert.throws(() => d.decode(hex('be')), HpackError, 'nothing was indexed');
});

test('hpack: an integer with endless zero continuation bytes is refused, not read as NaN', () => {
  // A table size update (0x3f) whose integer never ends its continuation: 0 * 2^shift adds nothing, so only its length can stop it.
  const block = Buffer.concat([Buffer.from([0x3f]), Buffer.alloc(150, 0x80), Buffer.from([0x00])]);
  assert.throws(() => new HpackDecoder().decode(block), HpackError);
});
