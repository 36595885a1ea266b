import type { Message } from '../raft/index.js';
import { type RangeMessage, decodeMemberContext } from '../kv/index.js';
import { messageOf } from './errors.js';

/**
 * Why a message from a peer must not reach the store, or undefined. Raft
 * refuses what breaks its own rules (src/raft/implausible.ts) and apply
 * refuses commands that are not commands (readCommand); this refuses what
 * neither can: a membership change a peer forwards is a conf change for
 * Raft, which applies it whatever its context says, and the member table
 * then cannot follow (a malformed context stopped every node, issue 12).
 * This node's members propose membership changes through membership.ts,
 * always with a member context, so a forwarded one without one is forged.
 */
export function refusedPeerMessage(m: Message): string | undefined {
  if (m.type !== 'MsgProp') return undefined;
  for (const e of m.entries) {
    if (e.type !== 'conf-change') continue;
    try {
      if (e.confChange === undefined || decodeMemberContext(e.confChange) === undefined) return 'a forwarded membership change without a member context';
    } catch (error) {
      return `a forwarded membership change with a malformed member context: ${messageOf(error)}`;
    }
  }
  return undefined;
}

/** The messages the store may see; each refused one goes to `refused` (to be logged). */
export function acceptedPeerMessages(messages: readonly RangeMessage[], refused: (rm: RangeMessage, why: string) => void): readonly RangeMessage[] {
  let out: RangeMessage[] | undefined;
  for (let i = 0; i < messages.length; i++) {
    const rm = messages[i] as RangeMessage;
    const why = refusedPeerMessage(rm.message);
    if (why === undefined) {
      out?.push(rm);
      continue;
    }
    refused(rm, why);
    out ??= messages.slice(0, i);
  }
  return out ?? messages;
}
