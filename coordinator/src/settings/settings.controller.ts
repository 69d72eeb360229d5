import { Body, Controller, Get, Inject, Patch } from '@nestjs/common';
import { Caller } from '../auth/caller.decorator.js';
import { Roles, type Principal } from '../auth/roles.js';
import { Settings, type CoordinatorSettings } from './settings.js';

@Controller('api/v1')
export class SettingsController {
  constructor(@Inject(Settings) private readonly settings: Settings) {}

  @Get('settings')
  @Roles('admin', 'auditor')
  current(): Promise<CoordinatorSettings> {
    return this.settings.current();
  }

  /** A partial change: only the keys given; unknown keys and bad values are refused, naming the field. */
  @Patch('settings')
  @Roles('admin')
  update(@Body() body: unknown, @Caller() caller: Principal): Promise<CoordinatorSettings> {
    return this.settings.update(body, caller.actor);
  }
}
