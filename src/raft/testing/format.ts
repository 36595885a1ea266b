import type { Entry, HardState, Message, Snapshot } from '../types.js';
import type { Ready } from '../raw_node.js';

const decoder = new TextDecoder();

export function formatEntry(e: Entry): string {
  if (e.type === 'conf-change') {
    const cc = e.confChange;
    const changes = cc === undefined ? '' : cc.changes.map((c) => `${c.type === 'add-node' ? 'v' : c.type === 'add-learner' ? 'l' : 'r'}${c.nodeId}`).join(' ');
    return `${e.term}/${e.index} EntryConfChange${cc !== undefined && cc.transition !== 'auto' ? `(${cc.transition})` : ''} ${changes}`.trimEnd();
  }
  return `${e.term}/${e.index} EntryNormal${e.data.byteLength === 0 ? '' : ` "${decoder.decode(e.data)}"`}`;
}

export function formatEntries(entries: readonly Entry[]): string {
  return entries.map(formatEntry).join(', ');
}

export function formatSnapshot(s: Snapshot): string {
  const cs = s.metadata.confState;
  let conf = `Voters:[${cs.voters.join(' ')}]`;
  if (cs.votersOutgoing.length > 0) conf += ` VotersOutgoing:[${cs.votersOutgoing.join(' ')}]`;
  if (cs.learners.length > 0) conf += ` Learners:[${cs.learners.join(' ')}]`;
  if (cs.learnersNext.length > 0) conf += ` LearnersNext:[${cs.learnersNext.join(' ')}]`;
  if (cs.autoLeave) conf += ' AutoLeave:true';
  return `Index:${s.metadata.index} Term:${s.metadata.term} ConfState:{${conf}}`;
}

export function formatMessage(m: Message): string {
  let s = `${m.from}->${m.to} ${m.type} Term:${m.term} Log:${m.logTerm}/${m.index}`;
  if (m.reject) s += ` Rejected (Hint: ${m.rejectHint})`;
  if (m.commit !== 0) s += ` Commit:${m.commit}`;
  if (m.entries.length > 0) s += ` Entries:[${formatEntries(m.entries)}]`;
  if (m.snapshot !== undefined) s += ` Snapshot:{${formatSnapshot(m.snapshot)}}`;
  if (m.context !== undefined) s += ` Context:${m.context}`;
  return s;
}

export function formatHardState(hs: HardState): string {
  return `HardState Term:${hs.term} Vote:${hs.vote} Commit:${hs.commit}`;
}

export function formatReady(rd: Ready): string[] {
  const out: string[] = [];
  if (rd.softState !== undefined) out.push(`Lead:${rd.softState.lead} State:${rd.softState.state}`);
  if (rd.hardState !== undefined) out.push(formatHardState(rd.hardState));
  if (rd.entries.length > 0) {
    out.push('Entries:');
    for (const e of rd.entries) out.push(`  ${formatEntry(e)}`);
  }
  if (rd.snapshot !== undefined) out.push(`Snapshot ${formatSnapshot(rd.snapshot)}`);
  if (rd.committedEntries.length > 0) {
    out.push('CommittedEntries:');
    for (const e of rd.committedEntries) out.push(`  ${formatEntry(e)}`);
  }
  if (rd.messages.length > 0) {
    out.push('Messages:');
    for (const m of rd.messages) out.push(`  ${formatMessage(m)}`);
  }
  if (rd.readStates.length > 0) {
    out.push('ReadStates:');
    for (const r of rd.readStates) out.push(`  index:${r.index} context:${r.context}`);
  }
  return out;
}
