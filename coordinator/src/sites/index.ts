export { DatasetSummaries, validateDatasetSummary, type DatasetSummaryView } from './dataset-summaries.js';
export { SiteActivityService, type SiteActivity, type SiteActivityView, type SiteIncidentView } from './site-activity.js';
export { SitesController } from './sites.controller.js';
