export { KeyEpochs, NO_MULTIPARTY_KIT, type MultipartyTrust } from './key-epochs.js';
export { checkMultipartyUpdate, type StoredContribution } from './updates.js';
