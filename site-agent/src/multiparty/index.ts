export { KeySwitchShares } from './key-switch-shares.js';
