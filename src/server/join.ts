import { connect } from 'node:net';
import { TesseraError } from '../base/index.js';
import { parseHostPort } from './address.js';
import { messageOf } from './errors.js';
import { decodeFrame, encodeFrame, FrameDecoder, type JoinMember, PEER_PROTOCOL_VERSION } from './wire.js';

/** How long one member may take to answer a join request. */
export const JOIN_REQUEST_TIMEOUT_MS = 5_000;
/** A member list larger than this is not a member list. */
const MAX_JOIN_FRAME_BYTES = 1 << 20;

export interface ClusterInfo {
  readonly clusterId: string;
  readonly members: readonly JoinMember[];
}

/**
 * Asks the member at `peerAddress` for the cluster's id and members, over
 * the peer port (etcd's joining member fetches /members from a peer URL).
 */
export function fetchClusterInfo(peerAddress: string, self: { readonly name: string; readonly peer: string }, timeoutMs = JOIN_REQUEST_TIMEOUT_MS): Promise<ClusterInfo> {
  const { host, port } = parseHostPort(peerAddress, 'member peer address');
  return new Promise((resolve, reject) => {
    const socket = connect({ host, port });
    const decoder = new FrameDecoder(MAX_JOIN_FRAME_BYTES);
    let settled = false;
    const settle = (error: Error | undefined, info?: ClusterInfo): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      if (error !== undefined) reject(error);
      else resolve(info as ClusterInfo);
    };
    const timer = setTimeout(() => settle(new TesseraError('TIMEOUT', `member at ${peerAddress} did not answer within ${timeoutMs} ms`)), timeoutMs);
    socket.on('connect', () => socket.write(encodeFrame({ t: 'join', v: PEER_PROTOCOL_VERSION, name: self.name, peer: self.peer })));
    socket.on('data', (chunk: Buffer) => {
      try {
        for (const payload of decoder.push(chunk)) {
          const f = decodeFrame(payload);
          if (f.t === 'members') settle(undefined, { clusterId: f.cluster, members: f.members });
          else if (f.t === 'reject') settle(new TesseraError('NOT_FOUND', `member at ${peerAddress} refused: ${f.message}`));
          else settle(new TesseraError('PARSE_ERROR', `member at ${peerAddress} answered a join with a '${f.t}' frame`));
        }
      } catch (error) {
        settle(error instanceof Error ? error : new Error(String(error)));
      }
    });
    socket.on('error', (error) => settle(new TesseraError('IO_ERROR', `cannot reach member at ${peerAddress}: ${messageOf(error)}`, { cause: error })));
    socket.on('close', () => settle(new TesseraError('IO_ERROR', `member at ${peerAddress} closed the connection without an answer`)));
  });
}
