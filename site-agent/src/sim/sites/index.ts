export { SimulatedSite, type SimulatedSiteOptions, type SimulatedUpload } from './simulated-site.js';
export { runSitesCli, SITES_USAGE } from './sites-cli.js';
