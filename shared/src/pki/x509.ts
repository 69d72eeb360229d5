// @peculiar/x509 resolves its algorithm providers through tsyringe, which needs the Reflect metadata API
// before the library module is evaluated; ES modules evaluate imports in order, so this line must stay first.
import 'reflect-metadata';
import { webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';

// Pin Node's own WebCrypto so signing never depends on whatever `globalThis.crypto` a host process installed.
x509.cryptoProvider.set(webcrypto);

export { x509 };
