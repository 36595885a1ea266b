import { assertNever } from '../../base/index.js';
import type { Model } from '../types.js';

/** Operations on the single etcd key of the Jepsen etcd test (porcupine-etcd). */
export type EtcdRegisterInput =
  | { readonly kind: 'read' }
  | { readonly kind: 'write'; readonly value: number }
  | { readonly kind: 'cas'; readonly from: number; readonly to: number };

/**
 * `value` answers a read (`null`: the key has no value); `succeeded` answers
 * a CAS. `unknown` is an operation whose result never came back.
 */
export type EtcdRegisterOutput =
  | { readonly kind: 'ok'; readonly value?: number | null; readonly succeeded?: boolean }
  | { readonly kind: 'unknown' };

/** The register's value; `null` until the first write. */
export type EtcdRegisterState = number | null;

function casResult(state: EtcdRegisterState, from: number, to: number): EtcdRegisterState {
  return state === from ? to : state;
}

/**
 * A compare-and-set register that starts empty. An unknown output accepts
 * anything, and an unknown write or CAS still changes the state as it would
 * if it took effect; "never took effect" is covered by its open interval,
 * which lets it be linearized after everything else.
 */
export const etcdRegisterModel: Model<EtcdRegisterState, EtcdRegisterInput, EtcdRegisterOutput> = {
  name: 'etcd-register',
  init: () => null,
  step(state, input, output) {
    const unknown = output.kind === 'unknown';
    switch (input.kind) {
      case 'read':
        return { ok: unknown || (output.kind === 'ok' && output.value === state), state };
      case 'write':
        return { ok: true, state: input.value };
      case 'cas': {
        const matches = state === input.from;
        const ok = unknown || (output.kind === 'ok' && output.succeeded === matches);
        return { ok, state: casResult(state, input.from, input.to) };
      }
      default:
        return assertNever(input, 'etcd-register input');
    }
  },
  hash: (state) => (state === null ? 'nil' : String(state)),
  // A CAS reported as failed is legal only where it would not match, and there it changes nothing.
  readOnly: (input, output) =>
    input.kind === 'read' || (input.kind === 'cas' && output.kind === 'ok' && output.succeeded === false),
  isUnknown: (output) => output.kind === 'unknown',
  describeOperation(input, output) {
    const result = describeOutput(input, output);
    switch (input.kind) {
      case 'read':
        return `read -> ${result}`;
      case 'write':
        return `write ${input.value} -> ${result}`;
      case 'cas':
        return `cas ${input.from}->${input.to} -> ${result}`;
      default:
        return assertNever(input, 'etcd-register input');
    }
  },
  describeState: (state) => (state === null ? 'nil' : String(state)),
};

function describeOutput(input: EtcdRegisterInput, output: EtcdRegisterOutput): string {
  if (output.kind === 'unknown') return 'unknown';
  if (input.kind === 'read') return output.value === null || output.value === undefined ? 'nil' : String(output.value);
  if (input.kind === 'cas') return output.succeeded === true ? 'swapped' : 'not swapped';
  return 'ok';
}
