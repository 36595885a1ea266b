import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** An error from the file system (a missing or unreadable file), as opposed to a bug. */
export function isFileError(e: unknown): e is Error {
  return e instanceof Error && typeof (e as NodeJS.ErrnoException).code === 'string' && 'syscall' in e;
}

/** Whether the module at `moduleUrl` (its import.meta.url) is the script node was started with, not an import (tests import the CLIs). */
export function invokedDirectly(moduleUrl: string): boolean {
  const script = process.argv[1];
  if (script === undefined) return false;
  try {
    return realpathSync(script) === realpathSync(fileURLToPath(moduleUrl));
  } catch {
    return false;
  }
}
