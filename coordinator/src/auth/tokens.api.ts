import { z } from 'zod';
import { apiSchema, type Expect, type SameShape } from '../openapi/index.js';
import { ROLES, type Principal } from './roles.js';
import { tokenRequestSchema, type IssuedToken, type TokenView } from './tokens.js';

/** What the token routes take and answer, for the API document; the checks at the end hold them to the types. */
const time = z.string().meta({ format: 'date-time', description: 'ISO 8601, UTC.' });
const role = z.enum(ROLES);

export const tokenRequestApiSchema = apiSchema('TokenRequest', tokenRequestSchema);

export const issuedTokenSchema = apiSchema(
  'IssuedToken',
  z.object({
    id: z.string(),
    name: z.string(),
    role,
    expiresAt: time,
    token: z.string().describe('fed_<id>_<secret>: shown this once; only its hash is kept.'),
  }),
);

export const tokenViewSchema = apiSchema(
  'Token',
  z.object({
    id: z.string(),
    name: z.string(),
    role,
    createdAt: time,
    createdBy: z.string().describe('The audit actor who issued it.'),
    expiresAt: time,
    revokedAt: time.nullable(),
    revokedBy: z.string().nullable(),
    lastUsedAt: time.nullable(),
    status: z.enum(['active', 'expired', 'revoked']),
  }),
);

export const tokenViewsSchema = z.array(tokenViewSchema);

export const principalSchema = apiSchema(
  'Principal',
  z.object({ tokenId: z.string(), name: z.string(), role, actor: z.string().describe('token:<id>, as the audit log names the caller.') }),
);

/** Compile-time: each schema is exactly the shape its handler returns. */
export type TokensApiChecks = [
  Expect<SameShape<z.output<typeof issuedTokenSchema>, IssuedToken>>,
  Expect<SameShape<z.output<typeof tokenViewSchema>, TokenView>>,
  Expect<SameShape<z.output<typeof principalSchema>, Principal>>,
];
