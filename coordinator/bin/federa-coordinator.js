#!/usr/bin/env node
// The `federa-coordinator` command: runs ../dist/main.js on a Node.js new enough for it (see @federa/shared/launch).
import { launch } from '@federa/shared/launch';

await launch(new URL('../dist/main.js', import.meta.url), 'federa-coordinator');
