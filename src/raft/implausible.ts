import type { Message } from './types.js';

/**
 * What the receiver knows that bears on whether a peer's message can be
 * true. Kept small so the rules below read as plain statements.
 */
export interface ReceiverView {
  readonly id: number;
  readonly term: number;
  readonly isLeader: boolean;
  readonly lastIndex: number;
}

/**
 * Why a message that claims to come from another node cannot have been sent
 * by a correct one, or undefined when it could have. Messages come off the
 * network (issue 12): a corrupt or forged one must be refused here, before it
 * reaches a handler whose assertions hold only for what correct peers send.
 * Local messages (MsgHup, MsgBeat, …) and this node's own proposals and reads
 * are not checked; they never cross the network.
 */
export function implausible(m: Message, self: ReceiverView): string | undefined {
  switch (m.type) {
    case 'MsgHup':
    case 'MsgBeat':
    case 'MsgCheckQuorum':
    case 'MsgUnreachable':
    case 'MsgSnapStatus':
      return undefined;
    case 'MsgProp':
    case 'MsgReadIndex':
      // Proposals and reads are forwarded without a term (they are local in spirit).
      if (m.term !== 0) return `${m.type} carries term ${m.term}; forwarded requests carry none`;
      return m.type === 'MsgProp' && m.entries.length === 0 ? 'MsgProp without entries' : undefined;
    case 'MsgTransferLeader':
      // Term 0: the application's own request (its `from` names the transferee); otherwise forwarded by a follower.
      return undefined;
    default:
      break;
  }
  if (m.from === self.id) return `${m.type} claims to come from this node`;
  if (m.quiesce === true && m.type !== 'MsgHeartbeat') return `${m.type} marked quiesce; only a heartbeat is`;
  if (m.term === 0) return `${m.type} without a term`;
  switch (m.type) {
    case 'MsgApp':
      return badAppend(m);
    case 'MsgHeartbeat':
      // A leader sends min(match, commit), and our match is durable in our log (§5.3).
      if (m.quiesce === true && m.logTerm > m.term) return `quiesce MsgHeartbeat names last term ${m.logTerm} above its term ${m.term}`;
      return m.commit > self.lastIndex ? `MsgHeartbeat commit ${m.commit} is beyond this node's last index ${self.lastIndex}` : undefined;
    case 'MsgAppResp':
      // An acknowledgement can only be of entries this leader sent in its term.
      return !m.reject && self.isLeader && m.term === self.term && m.index > self.lastIndex
        ? `MsgAppResp acknowledges index ${m.index} beyond the leader's last index ${self.lastIndex}`
        : undefined;
    case 'MsgSnap':
      return badSnapshot(m);
    default:
      return undefined;
  }
}

/** An append's entries follow its previous entry, in non-decreasing terms no higher than the message's. */
function badAppend(m: Message): string | undefined {
  if (m.logTerm > m.term) return `MsgApp previous term ${m.logTerm} above the message term ${m.term}`;
  let prevTerm = m.logTerm;
  for (let i = 0; i < m.entries.length; i++) {
    const e = m.entries[i];
    if (e === undefined) return 'MsgApp with a missing entry';
    if (e.index !== m.index + 1 + i) return `MsgApp entry ${i} has index ${e.index}, not ${m.index + 1 + i}`;
    if (e.term < prevTerm || e.term > m.term) return `MsgApp entry ${e.index} has term ${e.term} outside [${prevTerm}, ${m.term}]`;
    prevTerm = e.term;
  }
  return undefined;
}

function badSnapshot(m: Message): string | undefined {
  const s = m.snapshot;
  if (s === undefined) return 'MsgSnap without a snapshot';
  const { index, term } = s.metadata;
  if (index === 0 || term === 0 || term > m.term) return `MsgSnap of index ${index} term ${term} in message term ${m.term}`;
  return undefined;
}
