// The namespace as one request's caller may see it: MetaStore's calls behind the tenant boundary
// and the per-path rules, for every route in (unary RPCs and session ops, by path and by inode).
//
// Who sees what (decided once here):
// - auth off (anonymous) and holders of the admin role: the whole namespace, no rules;
// - a caller whose token names a tenant: only that tenant's root (common/tenants.ts), as its `/`,
//   made on first use. Every inode records its tenant (meta/types.ts), so an inode number another
//   tenant guessed is refused as if it did not exist (NotFound), like every path outside the root;
// - a caller with neither (auth on, no tenant claim, no admin role): nothing (PermissionDenied).
// Inside what it sees, the rules of its roles (rules.ts) bound each operation: reads need
// read-only, changes read-write (on the directory changed and on the entry moved or removed);
// and owner, group and mode bits bind it as a kernel would (posix-access.ts), with the uid and
// groups of its token, which also owns what it makes (a client-sent owner is ignored). Checked on
// attributes the operation reads anyway; an entry's own only where its owner matters (a sticky
// directory, a directory moved to another parent). An inode reached by its number (no path walk
// checked the directories above it: GetChunks, getattr, setattr, link...) is also refused unless
// each directory between the caller's root and it grants the caller search (x), as a kernel's
// path walk would: inode numbers are sequential, so guessing one must not get past a 0700 dir.
import type { Principal } from '../../common/auth-principal.js';
import { StrataError } from '../../common/errors.js';
import { TENANTS_DIR, TENANTS_DIR_NAME, isTenantName, tenantRootPath } from '../../common/tenants.js';
import type { MetaStore } from '../meta/store.js';
import type { Attr, ChunkRecord, CreateOptions, Owner, SetAttrChanges, SpecialKind } from '../meta/types.js';
import { ROOT_INO } from '../meta/types.js';
import type { AdminPolicy } from './admin.js';
import type { Denials } from './denials.js';
import { type Level, type PrincipalRules, type Rule, type RuleSet, rank } from './rules.js';
import { currentScope, type RequestScope } from './scope.js';
import * as posix from './posix-access.js';
import { NOBODY_GID, NOBODY_UID, type PosixCaller } from './posix-access.js';

/** What the services call: MetaStore's namespace calls, plus "this file, to write it" (AllocateChunk). */
export type Namespace = Pick<
  MetaStore,
  | 'resolve' | 'getattr' | 'lookup' | 'readdir' | 'readlink' | 'getChunks' | 'touchAtime' | 'counts'
  | 'mkdir' | 'create' | 'symlink' | 'mknod' | 'link' | 'unlink' | 'rmdir' | 'remove' | 'rename' | 'setattr' | 'commitChunk'
> & {
  attrForWrite(ino: number): Promise<Attr>;
  /** Whether the caller may write file `attr`, as create just gave it (its place and rules checked there): a first chunk's write grant only then. */
  mayWrite(attr: Attr): Promise<boolean>;
  /** Fails (NotFound) unless the caller may read inode `ino`: before a lease is taken on it. */
  requireVisible(ino: number): Promise<void>;
  /** The directory the caller sees as `/`: its tenant's root, or the namespace's (ROOT_INO). */
  callerRoot(): Promise<number>;
};

export interface GateOptions {
  /** Who sees the whole namespace (admin.ts). */
  admin: AdminPolicy;
  /** The claim tenants come from (for messages). */
  tenantClaim: string;
  rules?: RuleSet;
}

/** A tenant caller's view; undefined = the whole namespace, unchecked. */
interface TenantView {
  tenant: string;
  rootIno: number;
  rules?: PrincipalRules;
  /** Whom mode bits are checked for: the token's uid and groups (its tenant's nobody without them). */
  caller: PosixCaller;
  /** Rule paths resolved to directories (inode -> level), refreshed every ANCHOR_TTL_MS. */
  anchors?: { atMs: number; byIno: Map<number, Rule> };
}

/** The level the caller's rules give at an inode, and where it comes from (for the denial). */
interface Found {
  level: Level;
  from: string;
}

/** How long a principal's view (its root's inode, its rules' directories) is reused before being read again. */
const VIEW_TTL_MS = 5_000;
const ANCHOR_TTL_MS = 2_000;
const MAX_DEPTH = 4096;
/** A tenant's root is made world-writable and sticky (like /tmp): every user of the tenant can make its own entries there, and remove only those. */
const TENANT_ROOT_MODE = 0o1777;
/** A tenant root's path in a message, with the slash after it if any: `/tenants/<t>/`. */
const TENANT_PATH = new RegExp(`${TENANTS_DIR}/([A-Za-z0-9._-]+)/?`, 'g');

export class NamespaceGate implements Namespace {
  private readonly views = new WeakMap<Principal, { atMs: number; view: Promise<TenantView | undefined> }>();
  /**
   * Per request: the directories it found the caller may search, with every directory above
   * them up to its root (and the level the rules give there), so a readdirplus's children and an
   * operation's second inode end their walk up at the first directory already walked.
   */
  private readonly searched = new WeakMap<RequestScope, Map<number, Found>>();

  constructor(
    private readonly meta: MetaStore,
    private readonly options: GateOptions,
    private readonly denials: Denials,
  ) {}

  // ------------------------------------------------------------------ reads

  async resolve(components: string[], label = '/' + components.join('/')): Promise<Attr> {
    const [scope, view] = await this.enter();
    if (!view) return this.meta.resolve(components, label);
    const attr = await this.meta.resolve(components, label, view.rootIno, (dir) => this.posix(scope, posix.search(view.caller, dir), label));
    await this.check(scope, view, attr, 'read-only', label);
    return attr;
  }

  async getattr(ino: number): Promise<Attr> {
    const [scope, view] = await this.enter();
    const attr = await this.meta.getattr(ino);
    if (view) await this.check(scope, view, attr, 'read-only', `inode ${ino}`, true);
    return attr;
  }

  async attrForWrite(ino: number): Promise<Attr> {
    const [scope, view] = await this.enter();
    const attr = await this.meta.getattr(ino);
    if (view) {
      await this.check(scope, view, attr, 'read-write', `inode ${ino}`, true);
      this.posix(scope, posix.fileData(view.caller, attr, posix.W), `inode ${ino}`);
    }
    return attr;
  }

  async mayWrite(attr: Attr): Promise<boolean> {
    const [, view] = await this.enter();
    // The rules: create asked read-write of the entry already. A new file is the caller's own.
    return !view || posix.fileData(view.caller, attr, posix.W) === undefined;
  }

  async requireVisible(ino: number): Promise<void> {
    const [scope, view] = await this.enter();
    if (view) await this.inode(scope, view, ino, 'read-only');
  }

  async callerRoot(): Promise<number> {
    const [, view] = await this.enter();
    return view?.rootIno ?? ROOT_INO;
  }

  async lookup(parent: number, name: string): Promise<Attr> {
    const [scope, view] = await this.enter();
    if (view) this.posix(scope, posix.search(view.caller, await this.inode(scope, view, parent, 'read-only')), name);
    const attr = await this.meta.lookup(parent, name);
    if (view) await this.check(scope, view, attr, 'read-only', name);
    return attr;
  }

  async readdir(ino: number, after: string, limit: number, withAttrs: boolean) {
    const [scope, view] = await this.enter();
    if (view) {
      // Names need read; their attributes search too (ls -l in a directory without x fails).
      const dir = await this.inode(scope, view, ino, 'read-only');
      this.posix(scope, posix.access(view.caller, dir, withAttrs ? posix.R | posix.X : posix.R, 'the directory'), `inode ${ino}`);
    }
    return this.meta.readdir(ino, after, limit, withAttrs);
  }

  async readlink(ino: number): Promise<string> {
    const [scope, view] = await this.enter();
    if (view) await this.inode(scope, view, ino, 'read-only');
    return this.meta.readlink(ino);
  }

  async getChunks(ino: number, fromIndex: number, count: number) {
    const [scope, view] = await this.enter();
    const reply = await this.meta.getChunks(ino, fromIndex, count);
    if (view) {
      await this.check(scope, view, reply.attr, 'read-only', `inode ${ino}`, true);
      // The read grant goes with the locations: only to a reader.
      this.posix(scope, posix.fileData(view.caller, reply.attr, posix.R), `inode ${ino}`);
    }
    return reply;
  }

  /** Only after a GetChunks of the same inode checked it (an atime, not the caller's change). */
  touchAtime(ino: number, atimeMs: number): Promise<void> {
    return this.meta.touchAtime(ino, atimeMs);
  }

  counts() {
    return this.meta.counts();
  }

  // ------------------------------------------------------------------ changes

  async mkdir(parent: number, name: string, mode: number, owner?: Owner): Promise<Attr> {
    const view = await this.makeIn(parent, name);
    return this.shown(view, this.meta.mkdir(parent, name, mode, ownerFor(view, owner)));
  }

  async create(parent: number, name: string, options: CreateOptions): Promise<Attr> {
    const [scope, view] = await this.enter();
    if (!view) return this.meta.create(parent, name, options);
    // The entry too: a create may truncate an existing file, a change to it.
    // Search on the directory first: whether the name exists is not told to a caller without it.
    const dir = await this.inode(scope, view, parent, 'read-write');
    this.posix(scope, posix.search(view.caller, dir), name);
    await this.entry(scope, view, parent, name, 'read-write');
    // Whether the name is taken is known only inside the store's create: a new entry needs w on
    // the directory; an existing file is opened as POSIX open(O_CREAT) does, without w on the
    // directory, and emptying it needs w on the file (O_EXCL: Exists, told only after search).
    const check = {
      refusal: (fresh: Attr, existing: Attr | undefined) =>
        existing ? (options.truncate ? posix.access(view.caller, existing, posix.W, 'the file') : undefined) : posix.changeIn(view.caller, fresh),
      refuse: (refusal: string) => this.denials.denied(scope.principal, scope.op, name, refusal),
    };
    return this.shown(view, this.meta.create(parent, name, { ...options, owner: ownerFor(view, options.owner), check }));
  }

  async symlink(parent: number, name: string, target: string, owner?: Owner): Promise<Attr> {
    const view = await this.makeIn(parent, name);
    return this.shown(view, this.meta.symlink(parent, name, target, ownerFor(view, owner)));
  }

  async mknod(parent: number, name: string, kind: SpecialKind, mode: number, rdev: number, owner?: Owner): Promise<Attr> {
    const view = await this.makeIn(parent, name, kind);
    return this.shown(view, this.meta.mknod(parent, name, kind, mode, rdev, ownerFor(view, owner)));
  }

  async link(ino: number, newParent: number, newName: string): Promise<Attr> {
    const [scope, view] = await this.enter();
    if (view) {
      // Writable where it is and where it goes: a read-only file must not gain a writable name.
      this.posix(scope, posix.linkTo(view.caller, await this.inode(scope, view, ino, 'read-write')), newName);
      this.posix(scope, posix.changeIn(view.caller, await this.inode(scope, view, newParent, 'read-write')), newName);
    }
    return this.shown(view, this.meta.link(ino, newParent, newName));
  }

  async unlink(parent: number, name: string): Promise<Attr | null> {
    await this.removeIn(parent, name);
    return this.meta.unlink(parent, name);
  }

  async rmdir(parent: number, name: string): Promise<Attr | null> {
    await this.removeIn(parent, name);
    return this.meta.rmdir(parent, name);
  }

  async remove(parent: number, name: string): Promise<void> {
    await this.removeIn(parent, name);
    return this.meta.remove(parent, name);
  }

  async rename(srcParent: number, srcName: string, dstParent: number, dstName: string, options: { noReplace?: boolean } = {}): Promise<Attr | null> {
    const [scope, view] = await this.enter();
    if (view) {
      const { caller } = view;
      const srcDir = await this.inode(scope, view, srcParent, 'read-write');
      const dstDir = srcParent === dstParent ? srcDir : await this.inode(scope, view, dstParent, 'read-write');
      this.posix(scope, posix.changeIn(caller, srcDir), srcName);
      this.posix(scope, posix.changeIn(caller, dstDir), dstName);
      // A directory moving to another parent changes its '..': w on it too (as Linux asks).
      const src = await this.entry(scope, view, srcParent, srcName, 'read-write', posix.stickyApplies(caller, srcDir) || srcParent !== dstParent);
      if (src?.type === 'dir' && srcParent !== dstParent) this.posix(scope, posix.access(caller, src, posix.W, 'the directory moved'), srcName);
      this.posix(scope, posix.removeFrom(caller, srcDir, src), srcName);
      // The entry it replaces, if any, is changed (removed) too.
      const replaced = await this.entry(scope, view, dstParent, dstName, 'read-write', posix.stickyApplies(caller, dstDir));
      this.posix(scope, posix.removeFrom(caller, dstDir, replaced), dstName);
    }
    return this.shown(view, this.meta.rename(srcParent, srcName, dstParent, dstName, options));
  }

  async setattr(ino: number, changes: SetAttrChanges): Promise<Attr> {
    const [scope, view] = await this.enter();
    if (!view) return this.meta.setattr(ino, changes);
    const checked = posix.setattr(view.caller, await this.inode(scope, view, ino, 'read-write'), changes);
    if ('refused' in checked) throw this.denials.denied(scope.principal, scope.op, `inode ${ino}`, checked.refused);
    return this.shown(view, this.meta.setattr(ino, checked.changes));
  }

  async commitChunk(ino: number, record: ChunkRecord): Promise<Attr> {
    const [scope, view] = await this.enter();
    if (view) this.posix(scope, posix.fileData(view.caller, await this.inode(scope, view, ino, 'read-write'), posix.W), `inode ${ino}`);
    return this.shown(view, this.meta.commitChunk(ino, record));
  }

  // ------------------------------------------------------------------ checks

  /** A new entry `name` in directory `parent` (mkdir, symlink, mknod); the caller's view. */
  private async makeIn(parent: number, name: string, special?: SpecialKind): Promise<TenantView | undefined> {
    const [scope, view] = await this.enter();
    if (!view) return undefined;
    this.posix(scope, posix.changeIn(view.caller, await this.inode(scope, view, parent, 'read-write')), name);
    if (special) this.posix(scope, posix.mknod(view.caller, special), name);
    return view;
  }

  /** Removing entry `name` of directory `parent` (its own attributes read only where they matter). */
  private async removeIn(parent: number, name: string): Promise<void> {
    const [scope, view] = await this.enter();
    if (!view) return;
    const dir = await this.inode(scope, view, parent, 'read-write');
    // The directory first: whether the name exists is not told to a caller who may not change it.
    this.posix(scope, posix.changeIn(view.caller, dir), name);
    const victim = await this.entry(scope, view, parent, name, 'read-write', posix.stickyApplies(view.caller, dir));
    this.posix(scope, posix.removeFrom(view.caller, dir, victim), name);
  }

  /** Throws the mode bits' refusal, if any, as a logged denial. */
  private posix(scope: RequestScope, refused: string | undefined, label: string): void {
    if (refused) throw this.denials.denied(scope.principal, scope.op, label, refused);
  }

  /**
   * `change`'s outcome as the caller sees the namespace: a refusal that names a path (a quota's
   * directory) names it below the tenant's `/`, not by the whole namespace's /tenants/<t>.
   */
  private async shown<T>(view: TenantView | undefined, change: Promise<T>): Promise<T> {
    if (!view) return change;
    try {
      return await change;
    } catch (err) {
      if (!(err instanceof StrataError)) throw err;
      const message = err.message.replace(TENANT_PATH, (whole, tenant: string) => (tenant === view.tenant ? '/' : whole));
      if (message === err.message) throw err;
      throw new StrataError(err.kind, message, { cause: err });
    }
  }

  /** The request's caller and view (undefined: the whole namespace). */
  private async enter(): Promise<[RequestScope, TenantView | undefined]> {
    const scope = currentScope();
    const principal = scope.principal;
    if (this.options.admin.holds(principal)) return [scope, undefined];
    const now = Date.now();
    let cached = this.views.get(principal);
    if (!cached || now - cached.atMs > VIEW_TTL_MS) {
      cached = { atMs: now, view: this.tenantView(scope) };
      this.views.set(principal, cached);
      // A refusal is not remembered: the next request asks again (the root may have been fixed).
      cached.view.catch(() => this.views.delete(principal));
    }
    return [scope, await cached.view];
  }

  private async tenantView(scope: RequestScope): Promise<TenantView> {
    const { principal } = scope;
    const tenant = principal.tenant;
    if (!tenant) {
      throw this.denials.denied(principal, scope.op, '/', `the token names no tenant (claim '${this.options.tenantClaim}') and has no ${this.options.admin.role} role`);
    }
    if (!isTenantName(tenant)) throw this.denials.denied(principal, scope.op, '/', `tenant '${tenant.slice(0, 64)}' is not a valid tenant name (letters, digits, . _ -)`);
    const tenants = await this.lookupOrMkdir(ROOT_INO, TENANTS_DIR_NAME);
    const root = await this.lookupOrMkdir(tenants.ino, tenant, TENANT_ROOT_MODE);
    if (root.type !== 'dir' || root.tenant !== tenant) {
      throw this.denials.denied(principal, scope.op, '/', `${tenantRootPath(tenant)} is not a tenant root (made before tenants were kept apart?): an admin must move it away`);
    }
    const caller: PosixCaller = { uid: principal.uid ?? NOBODY_UID, gids: principal.gids?.length ? principal.gids : [NOBODY_GID] };
    return { tenant, rootIno: root.ino, rules: this.options.rules?.forPrincipal(principal), caller };
  }

  /** A tenant's root is made on its first request (mkdir in /tenants tags it: meta/store.ts childTags). */
  private async lookupOrMkdir(parent: number, name: string, mode = 0o755): Promise<Attr> {
    try {
      return await this.meta.lookup(parent, name);
    } catch (err) {
      if (!(err instanceof StrataError) || err.kind !== 'NotFound') throw err;
    }
    try {
      return await this.meta.mkdir(parent, name, mode);
    } catch (err) {
      if (!(err instanceof StrataError) || err.kind !== 'Exists') throw err;
      return this.meta.lookup(parent, name);
    }
  }

  /** Inode `ino`, reached by its number, as the caller may use it for `need`. */
  private async inode(scope: RequestScope, view: TenantView, ino: number, need: Level): Promise<Attr> {
    const attr = await this.meta.getattr(ino);
    await this.check(scope, view, attr, need, `inode ${ino}`, true);
    return attr;
  }

  /**
   * Entry `name` of `parent`, read when the rules may treat it apart from its directory or when
   * `wanted` (its owner matters), checked against the rules; undefined when not read or absent
   * (the store then says so).
   */
  private async entry(scope: RequestScope, view: TenantView, parent: number, name: string, need: Level, wanted = false): Promise<Attr | undefined> {
    if (!wanted && (!view.rules || view.rules.rules.length === 0)) return undefined;
    let attr: Attr;
    try {
      attr = await this.meta.lookup(parent, name);
    } catch {
      return undefined;
    }
    await this.check(scope, view, attr, need, name);
    return attr;
  }

  /** `attr` for `need`; `byNumber`: reached by its inode number, so the directories above it are searched too. */
  private async check(scope: RequestScope, view: TenantView, attr: Attr, need: Level, label: string, byNumber = false): Promise<void> {
    if ((attr.tenant ?? '') !== view.tenant) throw this.denials.hidden(scope.principal, scope.op, label, `outside tenant '${view.tenant}'`);
    if (!view.rules && !byNumber) return;
    const at = await this.levelAt(view, attr, byNumber ? this.searchedBy(scope) : undefined);
    if ('refused' in at) throw this.denials.denied(scope.principal, scope.op, label, at.refused);
    if (view.rules && rank(at.level) < rank(need)) {
      throw this.denials.denied(scope.principal, scope.op, label, `needs ${need}; the caller's roles have ${at.level} ${at.from}`);
    }
  }

  private searchedBy(scope: RequestScope): Map<number, Found> {
    let searched = this.searched.get(scope);
    if (!searched) this.searched.set(scope, (searched = new Map()));
    return searched;
  }

  /**
   * One walk up `attr`'s parents for both checks: the level the caller's rules give at `attr`
   * (the first rule directory on the way), and with `searched` (reached by inode number) search
   * (x) on every directory between the caller's root and `attr`, or the refusal. Without
   * `searched` the walk ends at the first rule directory; with it at the caller's root, or at a
   * directory this request already walked from (`searched`, which it adds the ones it read to).
   */
  private async levelAt(view: TenantView, attr: Attr, searched?: Map<number, Found>): Promise<Found | { refused: string }> {
    const rules = view.rules;
    const anchors = rules && rules.rules.length > 0 ? await this.anchors(view) : undefined;
    const ruleAt = (at: Attr): Found | undefined => {
      const rule = anchors?.get(at.ino);
      return rule && { level: rule.access, from: `(rule: role ${rule.role} on /${rule.path.join('/')})` };
    };
    const byDefault: Found = { level: rules?.default ?? 'read-write', from: '(the rules\' default)' };
    const unknownPlace = (): Found | { refused: string } => searched
      ? { refused: 'reached by inode number, and the directories above it are not known (so not searched): refused' }
      : { level: rules?.weakest ?? 'read-write', from: '(entry of unknown place: the most restrictive of its rules)' };
    let found = ruleAt(attr);
    if (!searched && (found || !anchors)) return found ?? byDefault;
    // The directories above `attr` this walk read, nearest first; `top` the level above the last.
    const passed: Attr[] = [];
    let top = byDefault;
    let at = attr;
    for (let depth = 0; at.ino !== view.rootIno; depth++) {
      if (at.ino === ROOT_INO || depth >= MAX_DEPTH) {
        if (searched) return { refused: `reached by inode number, and not under the caller's root` };
        break;
      }
      // An inode made before inodes recorded their parent, or whose recorded names all went.
      if (!at.parent) return unknownPlace();
      const known = searched?.get(at.parent);
      if (known) {
        top = known;
        break;
      }
      let parent: Attr;
      try {
        parent = await this.meta.getattr(at.parent);
      } catch (err) {
        if (err instanceof StrataError && err.kind === 'NotFound') return unknownPlace();
        throw err;
      }
      if (searched) {
        const refused = posix.search(view.caller, parent);
        if (refused) return { refused };
      }
      passed.push(parent);
      found ??= ruleAt(parent);
      if (!searched && found) return found;
      at = parent;
    }
    if (searched) {
      let level = top;
      for (const dir of passed.reverse()) searched.set(dir.ino, (level = ruleAt(dir) ?? level));
    }
    return found ?? top;
  }

  /** The caller's rule paths as directories under its root (absent paths match nothing until made). */
  private async anchors(view: TenantView): Promise<Map<number, Rule>> {
    const now = Date.now();
    if (view.anchors && now - view.anchors.atMs <= ANCHOR_TTL_MS) return view.anchors.byIno;
    const byIno = new Map<number, Rule>();
    for (const rule of view.rules!.rules) {
      let attr: Attr;
      try {
        attr = await this.meta.resolve(rule.path, '/' + rule.path.join('/'), view.rootIno);
      } catch {
        continue;
      }
      const held = byIno.get(attr.ino);
      if (!held || rank(rule.access) > rank(held.access)) byIno.set(attr.ino, rule);
    }
    view.anchors = { atMs: now, byIno };
    return byIno;
  }
}

/** Who owns a new entry: a checked caller's token ids (what the client sent is ignored); else what the client sent (auth off, or an admin: root may give entries away). */
function ownerFor(view: TenantView | undefined, sent: Owner | undefined): Owner | undefined {
  if (!view) return sent;
  return { uid: view.caller.uid, gid: view.caller.gids[0] };
}
