export { KeySwitchShares } from './key-switch-shares.js';
export { EpochSecrets, keyPairOf, type EpochSecret } from './epoch-secrets.js';
export { EpochClosedError, MultipartyKeys, type MultipartyKeysOptions, type SiteIdentityKeys } from './multiparty-keys.js';
export { partWindow, sumOfContributions, SumVerifier, type SumOfParts, type SumOfPartsInput } from './sum-verification.js';
