/**
 * The child process of wal.test.ts: batch i puts `k<i>` = `v<i>` and
 * `x<i>` = `x`; every third batch first stages `s<i>` = `v<i>` (staged
 * writes ride in the next commit's log record); every fifth also deletes
 * the range holding the previous batch's `x` key. Each durable commit is
 * reported on stdout ("durable i"); after `stopAfter` batches it reports
 * "idle" and waits to be killed.
 *
 * Arguments: the environment's path, the log's size, stopAfter.
 */
import { LmdbEngine, type LmdbOpenOptions } from './engine.js';

export const CHILD_MAP_SIZE_BYTES = 64 * 1024 * 1024;

async function main(): Promise<void> {
  const [path, walBytes, stopAfter] = [process.argv[2] as string, Number(process.argv[3]), Number(process.argv[4])];
  const options: LmdbOpenOptions = { path, mapSizeBytes: CHILD_MAP_SIZE_BYTES, walBytes };
  const engine = await LmdbEngine.open(options);
  const s = (x: string): Uint8Array => new TextEncoder().encode(x);
  let i = 0;
  const step = (): void => {
    if (i >= stopAfter) {
      process.stdout.write(`idle ${JSON.stringify(engine.stats)}\n`);
      return;
    }
    const n = i++;
    if (n % 3 === 0) {
      const staged = engine.newBatch();
      staged.put(s(`s${n}`), s(`v${n}`));
      engine.stage(staged);
    }
    const b = engine.newBatch();
    b.put(s(`k${n}`), s(`v${n}`));
    b.put(s(`x${n}`), s('x'));
    if (n % 5 === 0 && n > 0) b.deleteRange(s(`x${n - 1}`), s(`x${n - 1}\0`));
    engine.commit(b, (error) => {
      if (error !== undefined) {
        process.stdout.write(`error ${error.message}\n`);
        process.exit(3);
      }
      process.stdout.write(`durable ${n}\n`);
      setImmediate(step);
    });
  };
  step();
  setInterval(() => {}, 1000);
}

if (process.argv[1] !== undefined && import.meta.url.endsWith(process.argv[1].split('/').pop() ?? '')) void main();
