export { failpoint, FAILPOINTS, type Failpoint } from './failpoints.js';
