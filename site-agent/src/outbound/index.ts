export { Outbound } from './outbound.js';
