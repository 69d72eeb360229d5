export { DashboardController } from './dashboard.controller.js';
export { dashboardBuilt, dashboardFile, dashboardRoots, type DashboardRoots } from './dashboard-assets.js';
