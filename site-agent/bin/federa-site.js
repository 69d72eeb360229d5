#!/usr/bin/env node
// The `federa-site` command: runs ../dist/cli/main.js on a Node.js new enough for it (see @federa/shared/launch).
import { launch } from '@federa/shared/launch';

await launch(new URL('../dist/cli/main.js', import.meta.url), 'federa-site');
