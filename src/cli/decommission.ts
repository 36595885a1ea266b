import { adminUrl, unreachableReason } from './admin_http.js';

/** How long `tessera node decommission` waits for one answer from an admin endpoint. */
export const DECOMMISSION_REQUEST_TIMEOUT_MS = 3_000;
/** How long it waits, by default, for the node to be out of the cluster. */
export const DECOMMISSION_WAIT_MS = 120_000;
const POLL_MS = 500;

interface Status {
  readonly name: string;
  readonly nodeId: number;
  readonly decommission?: string;
  readonly members?: readonly { readonly id: number; readonly name: string }[];
}

async function statusOf(endpoint: string): Promise<Status | string> {
  try {
    const res = await fetch(adminUrl(endpoint, '/status'), { signal: AbortSignal.timeout(DECOMMISSION_REQUEST_TIMEOUT_MS) });
    if (!res.ok) return `HTTP ${res.status}`;
    return (await res.json()) as Status;
  } catch (error) {
    return unreachableReason(error);
  }
}

/**
 * `tessera node decommission <name>`: finds the node called `name` among the
 * admin endpoints, asks it to drain (`POST /decommission`: it hands its range
 * leaderships over, then asks for its own removal), and waits until the
 * other endpoints no longer list it as a member. Exit status 0 once it is
 * out, 1 if no endpoint is that node or it is still a member at the deadline.
 */
export async function runDecommission(name: string, endpoints: readonly string[], waitMs: number, print: (line: string) => void = (l) => process.stdout.write(`${l}\n`)): Promise<number> {
  const statuses = await Promise.all(endpoints.map(async (e) => ({ endpoint: e, status: await statusOf(e) })));
  const target = statuses.find((s) => typeof s.status !== 'string' && s.status.name === name);
  if (target === undefined || typeof target.status === 'string') {
    print(`no admin endpoint among ${endpoints.join(',')} is node ${name}`);
    return 1;
  }
  const id = target.status.nodeId;
  try {
    const res = await fetch(adminUrl(target.endpoint, '/decommission'), { method: 'POST', signal: AbortSignal.timeout(DECOMMISSION_REQUEST_TIMEOUT_MS) });
    if (res.status !== 202) {
      print(`node ${name} refused to decommission: HTTP ${res.status} ${await res.text()}`);
      return 1;
    }
  } catch (error) {
    print(`node ${name} did not answer: ${unreachableReason(error)}`);
    return 1;
  }
  print(`node ${name} (${id.toString(16)}) is draining`);
  const others = statuses.filter((s) => s !== target).map((s) => s.endpoint);
  const deadline = Date.now() + waitMs;
  for (;;) {
    const views = await Promise.all(others.map((e) => statusOf(e)));
    const answered = views.filter((v): v is Status => typeof v !== 'string');
    if (answered.length > 0 && answered.every((v) => !(v.members ?? []).some((m) => m.id === id))) {
      print(`node ${name} is out of the cluster`);
      return 0;
    }
    if (Date.now() > deadline) {
      const own = await statusOf(target.endpoint);
      const seen = views.map((v, i) => `${others[i]}: ${typeof v === 'string' ? v : (v.members ?? []).map((m) => m.name).join(',')}`).join('; ');
      print(`node ${name} is still a member after ${waitMs} ms (${typeof own === 'string' ? own : `its state: ${own.decommission ?? '?'}`}; members as the others see them: ${seen})`);
      return 1;
    }
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
}
