import { Body, Controller, Delete, Get, HttpCode, Inject, Param, Post } from '@nestjs/common';
import { describeIssues } from '@federa/shared';
import { InputError } from '../http/input-error.js';
import { ApiDoc } from '../openapi/index.js';
import { Settings } from '../settings/settings.js';
import { Caller } from './caller.decorator.js';
import { Roles, type Principal } from './roles.js';
import { issuedTokenSchema, principalSchema, tokenRequestApiSchema, tokenViewSchema, tokenViewsSchema } from './tokens.api.js';
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
  @ApiDoc({
    summary: 'Issue a token',
    description: 'The token is in the answer once; only its hash is stored. Names are unique among live tokens.',
    body: { description: 'Who the token is for, its role and lifetime.', schema: tokenRequestApiSchema },
    responses: { 201: { description: 'The new token.', schema: issuedTokenSchema } },
    errors: { 400: "The request is invalid, a live token has that name, or the lifetime exceeds the tokenMaxLifetimeDays setting." },
  })
  async issue(@Body() body: unknown, @Caller() caller: Principal): Promise<IssuedToken> {
    const parsed = tokenRequestSchema.safeParse(body);
    if (!parsed.success) throw new InputError('invalid token request', describeIssues(parsed.error));
    return this.tokens.issue(parsed.data, caller.actor, (await this.settings.current()).tokenMaxLifetimeDays);
  }

  @Get('tokens')
  @Roles('admin')
  @ApiDoc({ summary: 'List tokens (never their secrets)', responses: { 200: { description: 'Every token.', schema: tokenViewsSchema } } })
  list(): Promise<TokenView[]> {
    return this.tokens.list();
  }

  @Delete('tokens/:id')
  @HttpCode(200)
  @Roles('admin')
  @ApiDoc({
    summary: 'Revoke a token',
    params: { id: 'The token id (the public part of fed_<id>_<secret>).' },
    responses: { 200: { description: 'The revoked token.', schema: tokenViewSchema } },
    errors: { 400: 'Not a token id, or the token is already revoked.', 404: 'No such token.' },
  })
  revoke(@Param('id') id: string, @Caller() caller: Principal): Promise<TokenView> {
    return this.tokens.revoke(id, caller.actor);
  }

  @Get('whoami')
  @Roles('admin', 'researcher', 'auditor')
  @ApiDoc({ summary: "The caller's token: name, role and audit actor", responses: { 200: { description: 'The caller.', schema: principalSchema } } })
  whoami(@Caller() caller: Principal): Principal {
    return caller;
  }
}
