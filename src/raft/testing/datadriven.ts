import { InteractionEnv, parseCommand } from './interaction.js';

/**
 * Golden-file format: lines starting with '#' are prose; a command line is
 * followed by '----' and the expected output, which ends at a blank line.
 */
export interface Block {
  readonly line: number;
  readonly command: string;
  readonly expected: string;
}

export function parseScript(text: string): { blocks: Block[]; prose: string[] } {
  const lines = text.split('\n');
  const blocks: Block[] = [];
  const prose: string[] = [];
  let i = 0;
  while (i < lines.length) {
    const line = lines[i] as string;
    if (line.trim() === '' ) {
      i++;
      continue;
    }
    if (line.startsWith('#')) {
      prose.push(line);
      i++;
      continue;
    }
    const start = i + 1;
    const command = line.trim();
    i++;
    if ((lines[i] ?? '').trim() !== '----') throw new Error(`line ${start}: expected '----' after command '${command}'`);
    i++;
    const out: string[] = [];
    while (i < lines.length && (lines[i] as string).trim() !== '') out.push(lines[i++] as string);
    blocks.push({ line: start, command, expected: out.join('\n') });
  }
  return { blocks, prose };
}

/** Runs a script; returns the rewritten text (with actual outputs) and the mismatches. */
export function runScript(text: string): { rewritten: string; mismatches: { block: Block; actual: string }[] } {
  const { blocks } = parseScript(text);
  const env = new InteractionEnv();
  const mismatches: { block: Block; actual: string }[] = [];
  const actuals = new Map<number, string>();
  for (const block of blocks) {
    const actual = env.run(parseCommand(block.command));
    actuals.set(block.line, actual);
    if (actual !== block.expected) mismatches.push({ block, actual });
  }
  // Rebuild the file keeping prose and commands, replacing outputs.
  const lines = text.split('\n');
  const result: string[] = [];
  let i = 0;
  while (i < lines.length) {
    const line = lines[i] as string;
    const actual = actuals.get(i + 1);
    if (actual === undefined) {
      result.push(line);
      i++;
      continue;
    }
    result.push(line, '----');
    if (actual !== '') result.push(actual);
    i += 2;
    while (i < lines.length && (lines[i] as string).trim() !== '') i++;
  }
  return { rewritten: result.join('\n'), mismatches };
}
