export { AgentStatus, type CurrentTask, type StatusSource, type StatusView } from './agent-status.js';
export { isLoopback, statusConfigSchema, type StatusConfig } from './schema.js';
export { startStatusServer, type StatusServer } from './status-server.js';
