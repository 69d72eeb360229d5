import { apiSchema } from '../openapi/index.js';
import { settingsSchema, settingsUpdateSchema } from './settings.js';

/** The settings routes' schemas for the API document: the ones the handlers validate with, named. */
export const settingsApiSchema = apiSchema('Settings', settingsSchema);
export const settingsUpdateApiSchema = apiSchema('SettingsUpdate', settingsUpdateSchema);
