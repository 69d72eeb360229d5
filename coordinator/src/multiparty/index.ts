export { KeyEpochs, NO_MULTIPARTY_KIT, type MultipartyTrust } from './key-epochs.js';
export { checkMultipartyUpdate, type StoredContribution } from './updates.js';
export { listedUpdateC1, type UpdateC1Request } from './update-c1.js';
