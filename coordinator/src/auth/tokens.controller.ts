import { Body, Controller, Delete, Get, HttpCode, Inject, Param, Post } from '@nestjs/common';
import { describeIssues } from '@federa/shared';
import { InputError } from '../http/input-error.js';
import { Settings } from '../settings/settings.js';
import { Caller } from './caller.decorator.js';
import { Roles, type Principal } from './roles.js';
import { tokenRequestSchema, Tokens, type IssuedToken, type TokenView } from './tokens.js';

/** REST for admins: issue, list and revoke tokens; and for everyone with a token: who am I. */
@Controller('api/v1')
export class TokensController {
  constructor(
    @Inject(Tokens) private readonly tokens: Tokens,
    @Inject(Settings) private readonly settings: Settings,
  ) {}

  /** The token is in the answer once; only its hash is stored. */
  @Post('tokens')
  @Roles('admin')
  async issue(@Body() body: unknown, @Caller() caller: Principal): Promise<IssuedToken> {
    const parsed = tokenRequestSchema.safeParse(body);
    if (!parsed.success) throw new InputError('invalid token request', describeIssues(parsed.error));
    return this.tokens.issue(parsed.data, caller.actor, (await this.settings.current()).tokenMaxLifetimeDays);
  }

  @Get('tokens')
  @Roles('admin')
  list(): Promise<TokenView[]> {
    return this.tokens.list();
  }

  @Delete('tokens/:id')
  @HttpCode(200)
  @Roles('admin')
  revoke(@Param('id') id: string, @Caller() caller: Principal): Promise<TokenView> {
    return this.tokens.revoke(id, caller.actor);
  }

  @Get('whoami')
  @Roles('admin', 'researcher', 'auditor')
  whoami(@Caller() caller: Principal): Principal {
    return caller;
  }
}
