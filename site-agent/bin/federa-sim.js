#!/usr/bin/env node
// The `federa-sim` command: runs ../dist/sim/main.js on a Node.js new enough for it (see @federa/shared/launch).
import { launch } from '@federa/shared/launch';

await launch(new URL('../dist/sim/main.js', import.meta.url), 'federa-sim');
