/** Read-your-writes: a GET with `Ironclad-Position` (or ?min_position=) waits for the read models. */
import type { FastifyRequest } from 'fastify';
import { errors, IroncladError } from '../../domain/errors.js';
import type { HttpDeps } from '../context.js';

const MAX_WAIT_MS = 5000;

export async function caughtUp(deps: HttpDeps, req: FastifyRequest, minPosition: string | undefined): Promise<void> {
  const h = req.headers['ironclad-position'];
  // A header the client sent but we cannot read must not silently become an unguarded (possibly stale) read.
  if (h !== undefined && (typeof h !== 'string' || !/^\d+$/.test(h))) {
    throw errors.validation([{ path: 'header.ironclad-position', message: 'must be a position taken from an Ironclad-Position answer header' }]);
  }
  const pos = minPosition ?? h;
  if (pos === undefined) return;
  if (await deps.projector.waitFor(pos, MAX_WAIT_MS)) return;
  throw new IroncladError('not_caught_up', `The read models have not reached position ${pos} yet (at ${deps.projector.position() ?? 'none'}); retry.`, { retry_after_s: 1 });
}
