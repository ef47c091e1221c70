// The quota RPCs (QuotaSet, QuotaGet, QuotaList, QuotaRemove) and the nearest quota StatFs shows.
// Setting and removing quotas are admin operations (authz/admin.ts checks the role before these
// handlers run), so they act on the whole namespace. QuotaGet, QuotaList and StatFs are any
// caller's, inside what it sees (authz/gate.ts): a tenant's caller names paths from its own root,
// and sees only the quotas at or below that root (those its rules let it read), with paths from it;
// the admin lists every quota. StatFs shows a tenant's caller its tenant's figures (tenant-usage.ts).
import type * as grpc from '@grpc/grpc-js';
import { invalid } from '../common/errors.js';
import { unaryHandler } from '../common/grpc.js';
import { quoted } from '../common/limits.js';
import type { Logger } from '../common/log.js';
import { splitPath } from '../common/paths.js';
import type { Namespace } from './authz/gate.js';
import { QuotaAdmin, type QuotaInfo } from './meta/quota-admin.js';
import type { MetaStore } from './meta/store.js';
import { ROOT_INO } from './meta/types.js';
import { TenantUsage, type TenantFigures } from './tenant-usage.js';

/* eslint-disable @typescript-eslint/no-explicit-any -- wire requests are validated field by field below */
type Req = any;

/** Bounds a limit from the wire: a whole number of bytes or files (0 = no limit), or absent. */
function limitOf(req: Req, field: string): number | undefined {
  if (req[field] === undefined || req[field] === null) return undefined;
  const value = Number(req[field]);
  if (!Number.isSafeInteger(value) || value < 0) throw invalid(`invalid ${field} ${quoted(req[field])}: a whole number, 0 = no limit`);
  return value;
}

/** A request's path, checked by the one set of path rules (common/paths.ts), and its normal form. */
function pathOf(req: Req): { path: string; components: string[] } {
  const components = splitPath(req?.path);
  return { path: '/' + components.join('/'), components };
}

export const toWireQuota = (q: QuotaInfo) => ({
  path: q.path,
  ino: q.ino,
  limitBytes: q.limitBytes,
  limitFiles: q.limitFiles,
  usedBytes: q.usedBytes,
  usedFiles: q.usedFiles,
});

/** `store` for the admin's calls (the whole namespace), `namespace` for what any caller may see. */
export function quotaService(store: MetaStore, namespace: Namespace, log?: Logger) {
  const quotas = new QuotaAdmin(store.kv, store);
  const handlers = {
    QuotaSet: unaryHandler(async (req: Req) => {
      const { path } = pathOf(req);
      const started = Date.now();
      const info = await quotas.set(path, { bytes: limitOf(req, 'limitBytes'), files: limitOf(req, 'limitFiles') }, { recount: !!req.recount });
      log?.info({ path, limitBytes: info.limitBytes, limitFiles: info.limitFiles, usedBytes: info.usedBytes, usedFiles: info.usedFiles, ms: Date.now() - started }, 'quota set');
      return toWireQuota(info);
    }),
    QuotaGet: unaryHandler(async (req: Req) => {
      const { path, components } = pathOf(req);
      return toWireQuota(await quotas.getDir(await namespace.resolve(components, path), path));
    }),
    QuotaList: unaryHandler(async () => {
      const top = await namespace.callerRoot(); // PermissionDenied for a caller who sees nothing
      if (top === ROOT_INO) return { quotas: (await quotas.list()).map(toWireQuota) };
      const { tenant } = await store.getattr(top);
      // The tenant's inodes only (every inode records its tenant), read as the caller may: a
      // directory its rules keep it from reading is left out, like one of another tenant's.
      const mine = async (ino: number) => {
        const attr = await store.getattr(ino).catch(() => undefined);
        if (!attr || !tenant || attr.tenant !== tenant) return false;
        return namespace.getattr(ino).then(() => true, () => false);
      };
      return { quotas: (await quotas.list(top, mine)).map(toWireQuota) };
    }),
    QuotaRemove: unaryHandler(async (req: Req) => {
      const { path } = pathOf(req);
      await quotas.remove(path);
      log?.info({ path }, 'quota removed');
      return {};
    }),
  } satisfies grpc.UntypedServiceImplementation;
  /** The nearest quota the caller may see at or above a StatFs request's path or inode (none: undefined). */
  const nearestFor = async (req: Req): Promise<QuotaInfo | undefined> => {
    const ino = Number(req?.ino) || 0;
    const { path, components } = pathOf({ path: typeof req?.path === 'string' && req.path !== '' ? req.path : '/' });
    const attr = ino > 0 ? await namespace.getattr(ino) : await namespace.resolve(components, path);
    return quotas.nearest(attr.ino, await namespace.callerRoot());
  };
  const tenants = new TenantUsage(store, quotas);
  /** A tenant caller's own figures for StatFs; undefined for the admin and anonymous callers (the cluster's). */
  const tenantFigures = async (): Promise<TenantFigures | undefined> => {
    const top = await namespace.callerRoot();
    return top === ROOT_INO ? undefined : tenants.of(top);
  };
  return { handlers, nearestFor, tenantFigures };
}
