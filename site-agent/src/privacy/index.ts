export { budgetRefusal, studyBudgetRefusal, mechanismRdp, plannedRound, PrivacyAccounts, roundPrivacySchema, roundRecord, type RoundPrivacy, type StudySpend } from './account.js';
export { privatizeUpdate } from './site-level.js';
