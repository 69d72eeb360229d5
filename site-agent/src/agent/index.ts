export { SiteAgent, AGENT_VERSION, NoUsableDataError, type SiteAgentEvents } from './site-agent.js';
export { RoundStateStore, type RoundState } from './round-state.js';
export { splitTrainValidation, selectImages } from './split.js';
