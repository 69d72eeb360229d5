#!/usr/bin/env node
// The `federa` command: runs ../dist/cli/federa.js on a Node.js new enough for it (see @federa/shared/launch).
import { launch } from '@federa/shared/launch';

await launch(new URL('../dist/cli/federa.js', import.meta.url), 'federa');
