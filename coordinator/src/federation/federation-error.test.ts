import { describe, expect, it } from 'vitest';
import { isTransientDatabaseError } from './federation-error.js';

describe('which failures a site may simply retry', () => {
  it('counts an unreachable or restarting database as transient, by Prisma code or driver message, also when wrapped', () => {
    expect(isTransientDatabaseError(Object.assign(new Error('Can\'t reach database server at 127.0.0.1:5432'), { code: 'P1001' }))).toBe(true);
    expect(isTransientDatabaseError(Object.assign(new Error('Timed out fetching a new connection from the pool'), { code: 'P2024' }))).toBe(true);
    expect(isTransientDatabaseError(new Error('connect ECONNREFUSED 127.0.0.1:5432'))).toBe(true);
    expect(isTransientDatabaseError(new Error('FATAL: the database system is starting up'))).toBe(true);
    expect(isTransientDatabaseError(new Error('query failed', { cause: new Error('Connection terminated unexpectedly') }))).toBe(true);
  });

  it('does not excuse a failure that is about the request or a bug', () => {
    expect(isTransientDatabaseError(Object.assign(new Error('Unique constraint failed on the fields: (`siteId`)'), { code: 'P2002' }))).toBe(false);
    expect(isTransientDatabaseError(new TypeError('Cannot read properties of undefined'))).toBe(false);
    expect(isTransientDatabaseError('ECONNREFUSED')).toBe(false);
    expect(isTransientDatabaseError(undefined)).toBe(false);
  });
});
