/**
 * Invariant checks. They stay on in production: a broken invariant means the
 * process can no longer be trusted with data, so it stops. `AssertionError`
 * is never caught by tessera code.
 */
export class AssertionError extends Error {
  override readonly name = 'AssertionError';
}

export function assert(condition: unknown, message: string | (() => string)): asserts condition {
  if (!condition) {
    throw new AssertionError(typeof message === 'string' ? message : message());
  }
}

export function assertNever(value: never, context = 'unexpected value'): never {
  throw new AssertionError(`${context}: ${JSON.stringify(value)}`);
}

export function unreachable(message: string): never {
  throw new AssertionError(`unreachable: ${message}`);
}
