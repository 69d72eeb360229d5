// Regenerates the TypeScript wire code in shared/src/proto/generated from proto/ with buf + ts-proto.
// `--check` generates into a temporary folder and fails if the checked-in output differs (CI runs it), so
// the generated code can never drift from the .proto files.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, cpSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const target = join(root, 'shared/src/proto/generated');
const check = process.argv.includes('--check');
const env = { ...process.env, PATH: `${join(root, 'node_modules/.bin')}:${process.env.PATH ?? ''}` };
const buf = join(root, 'node_modules/.bin/buf');

const run = (args) => execFileSync(buf, args, { cwd: join(root, 'proto'), env, stdio: 'inherit' });

function listFiles(dir) {
  const out = [];
  const walk = (d) => {
    for (const name of readdirSync(d)) {
      const p = join(d, name);
      if (statSync(p).isDirectory()) walk(p);
      else out.push(relative(dir, p));
    }
  };
  walk(dir);
  return out.sort();
}

run(['lint']);
const scratch = mkdtempSync(join(tmpdir(), 'federa-proto-'));
try {
  run(['generate', '--template', 'buf.gen.yaml', '-o', scratch]);
  if (check) {
    const want = listFiles(scratch);
    let have = [];
    try {
      have = listFiles(target);
    } catch {
      have = [];
    }
    const stale =
      want.join('\n') !== have.join('\n') ||
      want.some((f) => !readFileSync(join(scratch, f)).equals(readFileSync(join(target, f))));
    if (stale) {
      process.stderr.write('shared/src/proto/generated is stale: run `npm run proto` and commit the result\n');
      process.exit(1);
    }
    process.stdout.write('generated protobuf code is up to date\n');
  } else {
    rmSync(target, { recursive: true, force: true });
    cpSync(scratch, target, { recursive: true });
    process.stdout.write(`generated ${listFiles(target).join(', ')}\n`);
  }
} finally {
  rmSync(scratch, { recursive: true, force: true });
}
