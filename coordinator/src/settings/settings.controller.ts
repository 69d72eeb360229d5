import { Body, Controller, Get, Inject, Patch } from '@nestjs/common';
import { Caller } from '../auth/caller.decorator.js';
import { Roles, type Principal } from '../auth/roles.js';
import { ApiDoc } from '../openapi/index.js';
import { Settings, type CoordinatorSettings } from './settings.js';
import { settingsApiSchema, settingsUpdateApiSchema } from './settings.api.js';

@Controller('api/v1')
export class SettingsController {
  constructor(@Inject(Settings) private readonly settings: Settings) {}

  @Get('settings')
  @Roles('admin', 'auditor')
  @ApiDoc({ summary: "The coordinator's run-time settings", responses: { 200: { description: 'The settings.', schema: settingsApiSchema } } })
  current(): Promise<CoordinatorSettings> {
    return this.settings.current();
  }

  /** A partial change: only the keys given; unknown keys and bad values are refused, naming the field. */
  @Patch('settings')
  @Roles('admin')
  @ApiDoc({
    summary: 'Change settings (audited)',
    description: 'A partial change: only the keys given.',
    body: { description: 'The keys to change.', schema: settingsUpdateApiSchema },
    responses: { 200: { description: 'The settings after the change.', schema: settingsApiSchema } },
    errors: { 400: 'An unknown key or a bad value (each named in `issues`).' },
  })
  update(@Body() body: unknown, @Caller() caller: Principal): Promise<CoordinatorSettings> {
    return this.settings.update(body, caller.actor);
  }
}
