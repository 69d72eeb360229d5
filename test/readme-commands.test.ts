import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const BINS = ['federa', 'federa-coordinator', 'federa-site', 'federa-sim'] as const;
type Bin = (typeof BINS)[number];

/** One `npx <bin> ...` invocation in a README shell block, with where it is. */
interface ReadmeCommand {
  line: number;
  bin: Bin;
  words: string[];
}

/** Shell words of one command, quotes removed; enough for the README's commands (no nesting, no escapes). */
function shellWords(text: string): string[] {
  return [...text.matchAll(/"([^"]*)"|'([^']*)'|(\S+)/g)].map((m) => m[1] ?? m[2] ?? m[3]!);
}

/** Every `npx federa...` command in the README's sh blocks (continuation lines joined, comments and pipes cut). */
export function readmeCommands(markdown: string): ReadmeCommand[] {
  const commands: ReadmeCommand[] = [];
  const lines = markdown.split('\n');
  let inShell = false;
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    if (/^```(sh|bash)\s*$/.test(line)) inShell = true;
    else if (line.startsWith('```')) inShell = false;
    if (!inShell) continue;
    let text = line;
    while (text.endsWith('\\') && i + 1 < lines.length) text = `${text.slice(0, -1)} ${lines[++i]!}`;
    // A comment starts at " #"; a pipe, redirection, `&&` or `;` ends the command.
    const code = text.replace(/(^|\s)#.*$/, '');
    for (const segment of code.split(/&&|;|\||>/)) {
      const words = shellWords(segment.trim());
      const at = words.indexOf('npx');
      const bin = words[at + 1];
      if (at >= 0 && (BINS as readonly string[]).includes(bin ?? '')) commands.push({ line: i + 1, bin: bin as Bin, words: words.slice(at + 2) });
    }
  }
  return commands;
}

/** At most this many --help processes at once: each loads a whole CLI, and dozens at once starve a small machine. */
const HELP_CONCURRENCY = 3;
let running = 0;
const waiting: Array<() => void> = [];

async function help(bin: Bin, path: string[]): Promise<{ code: number; text: string }> {
  if (running >= HELP_CONCURRENCY) await new Promise<void>((go) => waiting.push(go));
  running++;
  try {
    return await new Promise((done) => {
      execFile(join(root, 'node_modules', '.bin', bin), [...path, '--help'], { cwd: root, timeout: 60_000 }, (error, stdout, stderr) =>
        done({ code: error ? (typeof error.code === 'number' ? error.code : 1) : 0, text: `${stdout}${stderr}${error?.signal ? ` (killed by ${error.signal})` : ''}` }),
      );
    });
  } finally {
    running--;
    waiting.shift()?.();
  }
}

/** How many leading words name a (sub)command rather than an argument, per command-line tool. */
function commandPath(command: ReadmeCommand): string[] {
  const positional = command.words.filter((w, i) => !w.startsWith('-') && !command.words[i - 1]?.startsWith('--'));
  switch (command.bin) {
    case 'federa':
      // federa <group> <action>, except the flat ones and provision (its own parser, one --help).
      if (['login', 'logout', 'whoami'].includes(positional[0] ?? '')) return positional.slice(0, 1);
      if (positional[0] === 'provision') return ['provision'];
      return positional.slice(0, 2);
    case 'federa-site':
      return ['data', 'model', 'ledger'].includes(positional[0] ?? '') ? positional.slice(0, 2) : positional.slice(0, 1);
    case 'federa-sim':
      return positional[0] === 'sites' ? ['sites'] : [];
    case 'federa-coordinator':
      return [];
  }
}

/**
 * The README's commands cannot drift from the code: every `npx federa...` line names a command that exists and only
 * flags its --help lists (a renamed command or flag fails here with the README line).
 */
describe('README commands', () => {
  const commands = readmeCommands(readFileSync(join(root, 'README.md'), 'utf8'));

  it('finds the commands of every section', () => {
    expect(commands.length).toBeGreaterThanOrEqual(35);
    expect(new Set(commands.map((c) => c.bin))).toEqual(new Set(BINS));
  });

  it('names only commands and flags that exist', async () => {
    const helps = new Map<string, Promise<{ code: number; text: string }>>();
    const problems: string[] = [];
    await Promise.all(
      commands.map(async (command) => {
        const path = commandPath(command);
        const key = [command.bin, ...path].join(' ');
        if (!helps.has(key)) helps.set(key, help(command.bin, path));
        const { code, text } = await helps.get(key)!;
        if (code !== 0) {
          problems.push(`README.md:${command.line}: \`${key} --help\` exits ${code}: ${text.split('\n')[0]}`);
          return;
        }
        // The last word of the path must be in its help (federa-site shows the overview's lines for the command).
        if (path.length > 0 && !text.includes(path.at(-1)!)) problems.push(`README.md:${command.line}: \`${key} --help\` does not mention ${path.at(-1)}`);
        for (const flag of command.words.filter((w) => /^--?[a-z]/.test(w)).map((w) => w.split('=')[0]!)) {
          if (!new RegExp(`(^|[\\s,[(|])${flag.replace(/[-]/g, '\\-')}(?![a-z-])`, 'm').test(text)) {
            problems.push(`README.md:${command.line}: ${key} has no flag ${flag} (not in its --help)`);
          }
        }
      }),
    );
    expect(problems.sort()).toEqual([]);
  }, 180_000);
});
