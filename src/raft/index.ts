export * from './types.js';
export { type RaftConfig, type ReadOnlyOption, type StepView, DEFAULT_RAFT_OPTIONS, validateRaftConfig, leaseTicks } from './config.js';
export { type LogStorage, MemoryLogStorage } from './storage.js';
export { type ReadState } from './read_only.js';
export { type DropReason, type StateType, CAMPAIGN_TRANSFER } from './raft.js';
export { RawNode, type Ready, type SoftState, type ProposeResult, type Status } from './raw_node.js';
export { configToString } from './tracker.js';
