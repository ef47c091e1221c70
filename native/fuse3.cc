// strata's FUSE binding: libfuse 3's low-level (inode-based) API for Node.
//
// One native thread runs the session loop. Each request is copied (names, write bytes) into a
// Request and queued to JavaScript through a thread-safe function; the loop thread never waits
// for an answer, so many requests are in flight at once. JavaScript answers with reply*(id, ...)
// on its own thread (fuse_reply_* may be called from any thread). Requests are named to
// JavaScript by a small id, never by pointer: a stale, repeated or made-up id is a JS error,
// not a use of freed memory. Answers JavaScript hands over (cache*: names and attributes the
// coordinator's lease covers) answer later lookups and getattrs on the loop thread itself, with
// no trip to JavaScript (see Answers). Kernel notifications (inval_entry/inode) go through a thread of
// their own: they may block until the kernel gets the lock of an inode whose request is waiting
// for JavaScript, so they must never run on JavaScript's thread.
#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>

#include <napi.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <climits>
#include <cstring>
#include <deque>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#ifndef RENAME_EXCHANGE
#define RENAME_EXCHANGE (1 << 1)
#endif

namespace {

enum class Op {
  Lookup, Forget, Getattr, Setattr, Readlink, Mknod, Mkdir, Unlink, Rmdir, Symlink, Rename, Link,
  Open, Read, Write, Flush, Release, Fsync, Opendir, Readdir, Readdirplus, Releasedir, Statfs,
  Create, Ended,
};

const char* OpName(Op op) {
  static const char* names[] = {"lookup", "forget", "getattr", "setattr", "readlink", "mknod", "mkdir",
                                "unlink", "rmdir", "symlink", "rename", "link", "open", "read", "write",
                                "flush", "release", "fsync", "opendir", "readdir", "readdirplus",
                                "releasedir", "statfs", "create", "ended"};
  return names[static_cast<int>(op)];
}

struct Touch;
void Untouch(Touch* t, bool ok, fuse_ino_t made);

struct Request {
  Op op;
  fuse_req_t req = nullptr;
  fuse_ino_t ino = 0;
  fuse_ino_t ino2 = 0;
  std::string name, name2;
  uint64_t fh = 0;
  bool hasFh = false;
  int64_t off = 0;
  uint64_t size = 0;
  int flags = 0;
  uint32_t mode = 0;
  int toSet = 0;
  struct stat attr {};
  char* data = nullptr;  // write bytes, owned until handed to JavaScript
  uid_t uid = 0;
  gid_t gid = 0;
  pid_t pid = 0;
  std::vector<std::pair<fuse_ino_t, uint64_t>> forgets;
  /** Answers.stamp at arrival. */
  uint64_t stamp = 0;
  /** A change: what it touches (Answers), released at its reply. */
  Touch* touch = nullptr;
  ~Request() {
    free(data);
    Untouch(touch, false, 0);  // never handed to JavaScript (a change that got EIO at once)
  }
};

struct Notice {
  uint64_t seq;
  bool entry;
  fuse_ino_t ino;
  std::string name;
  int64_t off, len;
};

using Clock = std::chrono::steady_clock;

/**
 * Answers the loop thread gives itself: names (parent, name) -> inode and attributes per inode,
 * each put by JavaScript with an answer it gave the kernel under the lease, valid together until
 * `validUntil` (the lease, which JavaScript moves on renewals) and dropped by JavaScript on every
 * push (before it is acked). This mount's own changes drop what they touch when they arrive, and
 * while one is in flight (arrival to reply) nothing it touches may be put: a put carries the
 * stamp of the request it answers, refused if older than the last change of what it touches.
 */
struct Answers {
  std::mutex mutex;
  Clock::time_point validUntil{};
  std::unordered_map<fuse_ino_t, std::unordered_map<std::string, fuse_ino_t>> names;
  /**
   * Directories whose every name is in `names` (JavaScript put their whole listing, which the
   * lease covers): a name not there is absent, answered here while no change of the directory is
   * in flight. This mount's own changes keep a directory whole only by their replies (Untouch);
   * a push about it, or anything else dropping its names, makes it not whole.
   */
  std::unordered_set<fuse_ino_t> whole;
  std::unordered_map<fuse_ino_t, struct stat> attrs;
  /** Files with more than one name: a removal of a name not known here may change their nlink. */
  std::unordered_set<fuse_ino_t> linked;
  /** Open here (open to release): their attributes are JavaScript's alone (buffered writes). */
  std::unordered_map<fuse_ino_t, int> open;
  /** Changes in flight per directory / inode, and the stamp at which each last ended. */
  std::unordered_map<fuse_ino_t, int> dirBusy, inoBusy;
  std::unordered_map<fuse_ino_t, uint64_t> dirChanged, inoChanged;
  /** Stamps below it are refused everywhere (the maps above were cleared). */
  uint64_t floor = 0;
  uint64_t stamp = 0;
  /** Lookups answered here that JavaScript has not counted yet (it counts every lookup the kernel holds). */
  std::unordered_map<fuse_ino_t, uint64_t> served;
  std::atomic<uint64_t> hits{0};
  bool enabled = false;

  void DropAll() {
    names.clear();
    whole.clear();
    attrs.clear();
    linked.clear();
  }
  void DropAttr(fuse_ino_t ino) {
    attrs.erase(ino);
    linked.erase(ino);
  }
  void DropName(fuse_ino_t parent, const std::string& name, bool known_links_only) {
    auto dir = names.find(parent);
    fuse_ino_t child = 0;
    bool found = false;
    if (dir != names.end()) {
      auto it = dir->second.find(name);
      if (it != dir->second.end()) {
        child = it->second;
        found = true;
        dir->second.erase(it);
      }
    }
    if (found && child) DropAttr(child);
    if (!found && !known_links_only) {
      // Which inode the name held is not known here: any file with several names may be it.
      for (fuse_ino_t ino : linked) attrs.erase(ino);
      linked.clear();
    }
  }
};

/** What a change touches, kept from its arrival to its reply. */
struct Touch {
  std::vector<fuse_ino_t> dirs, inos;
  /** The name it makes (create, mkdir, ..., a rename's new name) and the directory it removes one from, for Answers.whole. */
  fuse_ino_t madeIn = 0;
  std::string madeName;
  /** The inode the made name will hold when known at arrival (link; rename: the moved one, if kept). */
  fuse_ino_t madeIno = 0;
  fuse_ino_t removedFrom = 0;
};

/** A request JavaScript has not answered yet. */
struct Pending {
  fuse_req_t req;
  fuse_ino_t ino;
  /** The entry an answer names (lookup, mkdir, create, ..., link: the new name), to keep it (Answers). */
  fuse_ino_t entryParent;
  std::string entryName;
  uint64_t stamp;
  Touch* touch;  // a change's: released (Untouch) at its reply
  bool change;
};

void CallJs(Napi::Env env, Napi::Function handler, std::nullptr_t*, Request* request);
using Tsfn = Napi::TypedThreadSafeFunction<std::nullptr_t, Request, CallJs>;

/** The one mount of this process (a mount is a process in strata). */
struct Session {
  fuse_session* se = nullptr;
  std::string mountpoint;
  Tsfn tsfn;
  std::thread loop;
  bool writeback = false;
  unsigned maxWrite = 1 << 20;
  // JavaScript's thread only:
  std::unordered_map<uint32_t, Pending> pending;
  Answers answers;
  uint32_t nextId = 1;
  bool ended = false;
  bool destroyWhenIdle = false;
  // Notifications:
  std::thread notifier;
  std::mutex mutex;
  std::condition_variable wake;
  std::deque<Notice> notices;
  bool stopNotifier = false;
  uint64_t nextNotice = 1;
  /** Tells JavaScript up to which notice the kernel has taken (optional). */
  Napi::ThreadSafeFunction notified;
  bool hasNotified = false;
};

Session* current = nullptr;

void Queue(Request* request) {
  if (!current || current->tsfn.NonBlockingCall(request) != napi_ok) {
    if (request->req) fuse_reply_err(request->req, EIO);
    delete request;
  }
}

Request* Make(Op op, fuse_req_t req, fuse_ino_t ino) {
  auto* r = new Request();
  r->op = op;
  r->req = req;
  r->ino = ino;
  const fuse_ctx* ctx = fuse_req_ctx(req);
  r->uid = ctx->uid;
  r->gid = ctx->gid;
  r->pid = ctx->pid;
  if (current) {
    std::lock_guard<std::mutex> lock(current->answers.mutex);
    r->stamp = ++current->answers.stamp;
  }
  return r;
}

/**
 * A change arriving (loop thread): drops what it touches from the answers and holds them busy
 * until its reply. `names` are the (directory, name) pairs it changes; `removes`: a removal or
 * rename, whose old name's inode must be found (else every file with several names goes: its
 * link count may be the one that changed).
 */
void Changing(Request* r, std::vector<fuse_ino_t> inos, std::vector<std::pair<fuse_ino_t, std::string>> names, bool removes) {
  if (!current) return;
  Answers& a = current->answers;
  auto* t = new Touch();
  std::lock_guard<std::mutex> lock(a.mutex);
  for (auto& n : names) {
    a.DropName(n.first, n.second, !removes);
    t->dirs.push_back(n.first);
    a.dirBusy[n.first]++;
    inos.push_back(n.first);  // its mtime (and nlink) change
  }
  for (fuse_ino_t ino : inos) {
    a.DropAttr(ino);
    t->inos.push_back(ino);
    a.inoBusy[ino]++;
  }
  r->touch = t;
}

/** A change making the name (dir, name), holding `ino` when known now (Answers.whole). */
void Makes(Request* r, fuse_ino_t dir, const std::string& name, fuse_ino_t ino = 0) {
  if (!r->touch) return;
  r->touch->madeIn = dir;
  r->touch->madeName = name;
  r->touch->madeIno = ino;
}

void Removes(Request* r, fuse_ino_t dir) {
  if (r->touch) r->touch->removedFrom = dir;
}

/** The inode a name holds as kept here (0: not known); before the change drops it. */
fuse_ino_t KeptChild(fuse_ino_t dir, const std::string& name) {
  if (!current) return 0;
  Answers& a = current->answers;
  std::lock_guard<std::mutex> lock(a.mutex);
  auto d = a.names.find(dir);
  if (d == a.names.end()) return 0;
  auto it = d->second.find(name);
  return it == d->second.end() ? 0 : it->second;
}

/** A change whose effect on names is not followed here: its directories stop being whole. */
void NotWhole(std::initializer_list<fuse_ino_t> dirs) {
  if (!current) return;
  Answers& a = current->answers;
  std::lock_guard<std::mutex> lock(a.mutex);
  for (fuse_ino_t d : dirs) a.whole.erase(d);
}

/** Names the loop thread never answers as absent: a file removed while open here (fuse/lowlevel/ops.ts HIDDEN_PREFIX) keeps a name readdir leaves out. */
bool MayBeHidden(const char* name) {
  return std::strncmp(name, ".strata_hidden_", 15) == 0;
}

/**
 * A change's reply (JavaScript's thread): what it touched is free again, changed as of now.
 * `ok`: it succeeded; `made`: the inode its new name holds (0: not known). A whole directory
 * stays whole only if the change is known to have done exactly what it says: its new name kept
 * (no other change of the directory in flight meanwhile), its removed name gone.
 */
void Untouch(Touch* t, bool ok, fuse_ino_t made) {
  if (!t || !current) {
    delete t;
    return;
  }
  Answers& a = current->answers;
  std::lock_guard<std::mutex> lock(a.mutex);
  if (t->madeIn && a.whole.count(t->madeIn)) {
    fuse_ino_t ino = made ? made : t->madeIno;
    auto busy = a.dirBusy.find(t->madeIn);
    // Busy only with this change's own holds (a rename within one directory holds it twice).
    auto own = std::count(t->dirs.begin(), t->dirs.end(), t->madeIn);
    if (ok && ino && busy != a.dirBusy.end() && busy->second == own) a.names[t->madeIn][t->madeName] = ino;
    else a.whole.erase(t->madeIn);
  }
  if (t->removedFrom && !ok) a.whole.erase(t->removedFrom);
  uint64_t now = ++a.stamp;
  for (fuse_ino_t d : t->dirs) {
    if (--a.dirBusy[d] <= 0) a.dirBusy.erase(d);
    a.dirChanged[d] = now;
  }
  for (fuse_ino_t i : t->inos) {
    if (--a.inoBusy[i] <= 0) a.inoBusy.erase(i);
    a.inoChanged[i] = now;
  }
  // Bounded: past it, every older stamp is refused at once.
  if (a.dirChanged.size() + a.inoChanged.size() > 100000) {
    a.dirChanged.clear();
    a.inoChanged.clear();
    a.floor = now + 1;
  }
  delete t;
}

/** Whether an answer to a request stamped `stamp` may be kept about directory/inode `key`. */
bool Fresh(const std::unordered_map<fuse_ino_t, int>& busy, const std::unordered_map<fuse_ino_t, uint64_t>& changed, uint64_t floor, fuse_ino_t key, uint64_t stamp) {
  if (stamp < floor || busy.count(key)) return false;
  auto it = changed.find(key);
  return it == changed.end() || it->second < stamp;
}

double LeftSeconds(Answers& a, Clock::time_point now) {
  return std::chrono::duration<double>(a.validUntil - now).count();
}

/** A lookup the loop thread answers itself (true), or leaves to JavaScript. */
bool AnswerLookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
  if (!current) return false;
  Answers& a = current->answers;
  fuse_entry_param e{};
  bool absent = false;
  {
    std::lock_guard<std::mutex> lock(a.mutex);
    auto now = Clock::now();
    if (!a.enabled || now >= a.validUntil) return false;
    auto dir = a.names.find(parent);
    auto it = dir == a.names.end() ? std::unordered_map<std::string, fuse_ino_t>::iterator() : dir->second.find(name);
    if (dir == a.names.end() || it == dir->second.end()) {
      // Absent from a whole directory. Answered ENOENT, which the kernel does not keep (no push
      // would tell it when the name comes): every later lookup of it asks here again.
      // A name past NAME_MAX is never "absent": JavaScript answers it ENAMETOOLONG, as POSIX asks.
      if (!a.whole.count(parent) || a.dirBusy.count(parent) || MayBeHidden(name) || std::strlen(name) > NAME_MAX) return false;
      absent = true;
    } else {
      double left = LeftSeconds(a, now);
      e.entry_timeout = left;
      if (it->second != 0) {
        auto at = a.attrs.find(it->second);
        if (at == a.attrs.end() || a.open.count(it->second)) return false;
        e.ino = it->second;
        e.attr = at->second;
        e.attr_timeout = left;
        a.served[e.ino]++;
      }
    }
  }
  a.hits++;
  if (absent) fuse_reply_err(req, ENOENT);
  else fuse_reply_entry(req, &e);
  return true;
}

bool AnswerGetattr(fuse_req_t req, fuse_ino_t ino) {
  if (!current) return false;
  Answers& a = current->answers;
  struct stat st;
  double left;
  {
    std::lock_guard<std::mutex> lock(a.mutex);
    auto now = Clock::now();
    if (!a.enabled || now >= a.validUntil || a.open.count(ino)) return false;
    auto at = a.attrs.find(ino);
    if (at == a.attrs.end()) return false;
    st = at->second;
    left = LeftSeconds(a, now);
  }
  a.hits++;
  fuse_reply_attr(req, &st, left);
  return true;
}

void Opened(fuse_ino_t ino, int delta) {
  if (!current) return;
  Answers& a = current->answers;
  std::lock_guard<std::mutex> lock(a.mutex);
  a.DropAttr(ino);
  int& n = a.open[ino];
  n += delta;
  if (n <= 0) a.open.erase(ino);
}

void WithFh(Request* r, fuse_file_info* fi) {
  if (fi) {
    r->fh = fi->fh;
    r->hasFh = true;
    r->flags = fi->flags;
  }
}

// ---- libfuse callbacks (loop thread) ----

void OnInit(void* userdata, fuse_conn_info* conn) {
  auto* s = static_cast<Session*>(userdata);
  conn->max_write = s->maxWrite;
  conn->max_readahead = conn->max_readahead > s->maxWrite ? conn->max_readahead : s->maxWrite;
  conn->max_background = 64;
  conn->congestion_threshold = 48;
  conn->time_gran = 1000000;  // strata keeps milliseconds
  if (conn->capable & FUSE_CAP_READDIRPLUS) conn->want |= FUSE_CAP_READDIRPLUS;
  conn->want &= ~FUSE_CAP_READDIRPLUS_AUTO;
  if (conn->capable & FUSE_CAP_ATOMIC_O_TRUNC) conn->want |= FUSE_CAP_ATOMIC_O_TRUNC;
  if (conn->capable & FUSE_CAP_PARALLEL_DIROPS) conn->want |= FUSE_CAP_PARALLEL_DIROPS;
  if (s->writeback && (conn->capable & FUSE_CAP_WRITEBACK_CACHE)) conn->want |= FUSE_CAP_WRITEBACK_CACHE;
  else conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
  // Bytes are copied out of the request buffer once; splice would only add a pipe.
  conn->want &= ~(FUSE_CAP_SPLICE_READ | FUSE_CAP_SPLICE_WRITE | FUSE_CAP_SPLICE_MOVE);
}

void OnLookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
  if (AnswerLookup(req, parent, name)) return;
  auto* r = Make(Op::Lookup, req, parent);
  r->name = name;
  Queue(r);
}

void OnForget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup) {
  auto* r = new Request();
  r->op = Op::Forget;
  r->forgets.emplace_back(ino, nlookup);
  fuse_reply_none(req);
  Queue(r);
}

void OnForgetMulti(fuse_req_t req, size_t count, fuse_forget_data* forgets) {
  auto* r = new Request();
  r->op = Op::Forget;
  for (size_t i = 0; i < count; i++) r->forgets.emplace_back(forgets[i].ino, forgets[i].nlookup);
  fuse_reply_none(req);
  Queue(r);
}

void OnGetattr(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  if (AnswerGetattr(req, ino)) return;
  auto* r = Make(Op::Getattr, req, ino);
  WithFh(r, fi);
  Queue(r);
}

void OnSetattr(fuse_req_t req, fuse_ino_t ino, struct stat* attr, int toSet, fuse_file_info* fi) {
  auto* r = Make(Op::Setattr, req, ino);
  WithFh(r, fi);
  r->attr = *attr;
  r->toSet = toSet;
  Changing(r, {ino}, {}, false);
  Queue(r);
}

void OnReadlink(fuse_req_t req, fuse_ino_t ino) { Queue(Make(Op::Readlink, req, ino)); }

void OnMknod(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode, dev_t rdev) {
  auto* r = Make(Op::Mknod, req, parent);
  r->name = name;
  r->mode = mode;
  r->size = rdev;  // the device number rides in size (mknod has no size)
  Changing(r, {}, {{parent, name}}, false);
  Makes(r, parent, name);
  Queue(r);
}

void OnMkdir(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode) {
  auto* r = Make(Op::Mkdir, req, parent);
  r->name = name;
  r->mode = mode;
  Changing(r, {}, {{parent, name}}, false);
  Makes(r, parent, name);
  Queue(r);
}

void OnUnlink(fuse_req_t req, fuse_ino_t parent, const char* name) {
  auto* r = Make(Op::Unlink, req, parent);
  r->name = name;
  Changing(r, {}, {{parent, name}}, true);
  Removes(r, parent);
  Queue(r);
}

void OnRmdir(fuse_req_t req, fuse_ino_t parent, const char* name) {
  auto* r = Make(Op::Rmdir, req, parent);
  r->name = name;
  Changing(r, {}, {{parent, name}}, true);
  Removes(r, parent);
  Queue(r);
}

void OnSymlink(fuse_req_t req, const char* target, fuse_ino_t parent, const char* name) {
  auto* r = Make(Op::Symlink, req, parent);
  r->name = name;
  r->name2 = target;
  Changing(r, {}, {{parent, name}}, false);
  Makes(r, parent, name);
  Queue(r);
}

void OnRename(fuse_req_t req, fuse_ino_t parent, const char* name, fuse_ino_t newparent, const char* newname,
              unsigned int flags) {
  auto* r = Make(Op::Rename, req, parent);
  r->name = name;
  r->ino2 = newparent;
  r->name2 = newname;
  r->flags = static_cast<int>(flags);
  fuse_ino_t moved = KeptChild(parent, name);
  Changing(r, {}, {{parent, name}, {newparent, newname}}, true);
  if (flags & RENAME_EXCHANGE) {
    NotWhole({parent, newparent});  // both names stay, holding each other's inode
  } else {
    Removes(r, parent);
    Makes(r, newparent, newname, moved);
  }
  Queue(r);
}

void OnLink(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char* newname) {
  auto* r = Make(Op::Link, req, ino);
  r->ino2 = newparent;
  r->name2 = newname;
  Changing(r, {ino}, {{newparent, newname}}, false);
  Makes(r, newparent, newname, ino);
  Queue(r);
}

void OnOpen(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  auto* r = Make(Op::Open, req, ino);
  r->flags = fi->flags;
  Opened(ino, 1);
  Changing(r, {ino}, {}, false);  // O_TRUNC
  Queue(r);
}

void OnRead(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi) {
  auto* r = Make(Op::Read, req, ino);
  WithFh(r, fi);
  r->size = size;
  r->off = off;
  Queue(r);
}

void OnWrite(fuse_req_t req, fuse_ino_t ino, const char* buf, size_t size, off_t off, fuse_file_info* fi) {
  auto* r = Make(Op::Write, req, ino);
  WithFh(r, fi);
  // The request buffer is reused for the next request as soon as this returns.
  r->data = static_cast<char*>(malloc(size ? size : 1));
  if (!r->data) {
    fuse_reply_err(req, ENOMEM);
    delete r;
    return;
  }
  memcpy(r->data, buf, size);
  r->size = size;
  r->off = off;
  Changing(r, {ino}, {}, false);
  Queue(r);
}

void OnFlush(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  auto* r = Make(Op::Flush, req, ino);
  WithFh(r, fi);
  Changing(r, {ino}, {}, false);
  Queue(r);
}

void OnRelease(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  auto* r = Make(Op::Release, req, ino);
  WithFh(r, fi);
  Opened(ino, -1);
  Changing(r, {ino}, {}, false);  // its last close stores what it buffered
  Queue(r);
}

void OnFsync(fuse_req_t req, fuse_ino_t ino, int datasync, fuse_file_info* fi) {
  auto* r = Make(Op::Fsync, req, ino);
  WithFh(r, fi);
  r->mode = datasync;
  Changing(r, {ino}, {}, false);
  Queue(r);
}

void OnOpendir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  auto* r = Make(Op::Opendir, req, ino);
  r->flags = fi->flags;
  Queue(r);
}

void OnReaddirAny(Op op, fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi) {
  auto* r = Make(op, req, ino);
  WithFh(r, fi);
  r->size = size;
  r->off = off;
  Queue(r);
}

void OnReaddir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi) {
  OnReaddirAny(Op::Readdir, req, ino, size, off, fi);
}

void OnReaddirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi) {
  OnReaddirAny(Op::Readdirplus, req, ino, size, off, fi);
}

void OnReleasedir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  auto* r = Make(Op::Releasedir, req, ino);
  WithFh(r, fi);
  Queue(r);
}

void OnStatfs(fuse_req_t req, fuse_ino_t ino) { Queue(Make(Op::Statfs, req, ino)); }

void OnCreate(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode, fuse_file_info* fi) {
  auto* r = Make(Op::Create, req, parent);
  r->name = name;
  r->mode = mode;
  r->flags = fi->flags;
  Changing(r, {}, {{parent, name}}, false);
  Makes(r, parent, name);
  Queue(r);
}

fuse_lowlevel_ops MakeOps() {
  fuse_lowlevel_ops ops{};
  ops.init = OnInit;
  ops.lookup = OnLookup;
  ops.forget = OnForget;
  ops.forget_multi = OnForgetMulti;
  ops.getattr = OnGetattr;
  ops.setattr = OnSetattr;
  ops.readlink = OnReadlink;
  ops.mknod = OnMknod;
  ops.mkdir = OnMkdir;
  ops.unlink = OnUnlink;
  ops.rmdir = OnRmdir;
  ops.symlink = OnSymlink;
  ops.rename = OnRename;
  ops.link = OnLink;
  ops.open = OnOpen;
  ops.read = OnRead;
  ops.write = OnWrite;
  ops.flush = OnFlush;
  ops.release = OnRelease;
  ops.fsync = OnFsync;
  ops.opendir = OnOpendir;
  ops.readdir = OnReaddir;
  ops.readdirplus = OnReaddirplus;
  ops.releasedir = OnReleasedir;
  ops.statfs = OnStatfs;
  ops.create = OnCreate;
  return ops;
}

// ---- JavaScript's thread ----

double TimeMs(const struct timespec& t) { return static_cast<double>(t.tv_sec) * 1000 + t.tv_nsec / 1e6; }

/** A time of setattr: milliseconds, "now" or absent (UTIME_OMIT). */
Napi::Value SetTime(Napi::Env env, int toSet, int bit, int nowBit, const struct timespec& t) {
  if (toSet & nowBit) return Napi::String::New(env, "now");
  if (toSet & bit) return Napi::Number::New(env, TimeMs(t));
  return env.Undefined();
}

void CallJs(Napi::Env env, Napi::Function handler, std::nullptr_t*, Request* r) {
  Session* s = current;
  if (env == nullptr || s == nullptr) {
    if (r->req) fuse_reply_err(r->req, EIO);
    delete r;
    return;
  }
  Napi::Object o = Napi::Object::New(env);
  o.Set("op", OpName(r->op));
  if (r->op == Op::Ended) {
    s->ended = true;
  } else if (r->op == Op::Forget) {
    Napi::Array list = Napi::Array::New(env, r->forgets.size() * 2);
    for (size_t i = 0; i < r->forgets.size(); i++) {
      list.Set(i * 2, Napi::Number::New(env, static_cast<double>(r->forgets[i].first)));
      list.Set(i * 2 + 1, Napi::Number::New(env, static_cast<double>(r->forgets[i].second)));
    }
    o.Set("forgets", list);
  } else {
    uint32_t id = s->nextId;
    while (id == 0 || s->pending.count(id)) id++;
    s->nextId = id + 1;
    bool named = r->op == Op::Lookup || r->op == Op::Mkdir || r->op == Op::Mknod || r->op == Op::Create || r->op == Op::Symlink;
    fuse_ino_t entryParent = r->op == Op::Link ? r->ino2 : r->ino;
    std::string entryName = r->op == Op::Link ? r->name2 : named ? r->name : std::string();
    s->pending.emplace(id, Pending{r->req, r->ino, entryParent, std::move(entryName), r->stamp, r->touch, r->touch != nullptr});
    r->touch = nullptr;  // released at the reply
    o.Set("id", id);
    o.Set("ino", static_cast<double>(r->ino));
    o.Set("uid", static_cast<double>(r->uid));
    o.Set("gid", static_cast<double>(r->gid));
    o.Set("pid", static_cast<double>(r->pid));
    if (r->hasFh) o.Set("fh", static_cast<double>(r->fh));
    o.Set("flags", r->flags);
    switch (r->op) {
      case Op::Lookup: case Op::Unlink: case Op::Rmdir:
        o.Set("name", Napi::String::New(env, r->name));
        break;
      case Op::Mknod: case Op::Mkdir: case Op::Create:
        o.Set("name", Napi::String::New(env, r->name));
        o.Set("mode", r->mode);
        if (r->op == Op::Mknod) o.Set("rdev", static_cast<double>(r->size));
        break;
      case Op::Symlink:
        o.Set("name", Napi::String::New(env, r->name));
        o.Set("target", Napi::String::New(env, r->name2));
        break;
      case Op::Rename:
        o.Set("name", Napi::String::New(env, r->name));
        o.Set("newParent", static_cast<double>(r->ino2));
        o.Set("newName", Napi::String::New(env, r->name2));
        break;
      case Op::Link:
        o.Set("newParent", static_cast<double>(r->ino2));
        o.Set("newName", Napi::String::New(env, r->name2));
        break;
      case Op::Read: case Op::Readdir: case Op::Readdirplus:
        o.Set("size", static_cast<double>(r->size));
        o.Set("offset", static_cast<double>(r->off));
        break;
      case Op::Write: {
        char* data = r->data;
        r->data = nullptr;
        o.Set("data", Napi::Buffer<char>::New(env, data, r->size, [](Napi::Env, char* p) { free(p); }));
        o.Set("offset", static_cast<double>(r->off));
        break;
      }
      case Op::Fsync:
        o.Set("datasync", r->mode != 0);
        break;
      case Op::Setattr: {
        int t = r->toSet;
        if (t & FUSE_SET_ATTR_MODE) o.Set("mode", static_cast<double>(r->attr.st_mode));
        if (t & FUSE_SET_ATTR_UID) o.Set("setUid", static_cast<double>(r->attr.st_uid));
        if (t & FUSE_SET_ATTR_GID) o.Set("setGid", static_cast<double>(r->attr.st_gid));
        if (t & FUSE_SET_ATTR_SIZE) o.Set("size", static_cast<double>(r->attr.st_size));
        o.Set("atime", SetTime(env, t, FUSE_SET_ATTR_ATIME, FUSE_SET_ATTR_ATIME_NOW, r->attr.st_atim));
        o.Set("mtime", SetTime(env, t, FUSE_SET_ATTR_MTIME, FUSE_SET_ATTR_MTIME_NOW, r->attr.st_mtim));
        break;
      }
      default:
        break;
    }
  }
  delete r;
  handler.Call({o});
}

/** Takes the request `id` names out of the pending table; throws for an unknown id. */
Pending TakePending(const Napi::CallbackInfo& info, bool ok = true, fuse_ino_t made = 0) {
  Napi::Env env = info.Env();
  if (!current) throw Napi::Error::New(env, "not mounted");
  if (info.Length() < 1 || !info[0].IsNumber()) throw Napi::TypeError::New(env, "request id expected");
  uint32_t id = info[0].As<Napi::Number>().Uint32Value();
  auto it = current->pending.find(id);
  if (it == current->pending.end()) throw Napi::Error::New(env, "unknown or already answered request " + std::to_string(id));
  Pending p = std::move(it->second);
  current->pending.erase(it);
  Untouch(p.touch, ok, made);
  p.touch = nullptr;
  return p;
}

fuse_req_t Take(const Napi::CallbackInfo& info) {
  return TakePending(info).req;
}

/** What a reply lets the loop thread keep (the `keep` argument): nothing, the name, the name and attributes. */
enum Keep { kKeepNothing = 0, kKeepName = 1, kKeepAll = 2 };

int KeepArg(const Napi::CallbackInfo& info, size_t at) {
  return info.Length() > at && info[at].IsNumber() ? info[at].As<Napi::Number>().Int32Value() : kKeepNothing;
}

/** Bound on what is kept: past it, everything goes (JavaScript answers and puts again). */
constexpr size_t kKeptMax = 200000;

void KeepAttrLocked(Answers& a, fuse_ino_t ino, const struct stat& st, uint64_t stamp) {
  if (a.open.count(ino) || !Fresh(a.inoBusy, a.inoChanged, a.floor, ino, stamp)) return;
  if (a.attrs.size() >= kKeptMax) a.DropAll();
  a.attrs[ino] = st;
  if (st.st_nlink > 1 && !S_ISDIR(st.st_mode)) a.linked.insert(ino);
  else a.linked.erase(ino);
}

/**
 * Keeps what a reply told the kernel, to answer later requests on the loop thread: for a lookup,
 * under the stamp of its arrival; for a change (its own touch just released), as of now.
 */
void KeepEntry(const Pending& p, const fuse_entry_param& e, int keep) {
  if (keep == kKeepNothing || !current) return;
  Answers& a = current->answers;
  uint64_t stamp = p.change ? UINT64_MAX : p.stamp;
  std::lock_guard<std::mutex> lock(a.mutex);
  if (!a.enabled || !Fresh(a.dirBusy, a.dirChanged, a.floor, p.entryParent, stamp)) return;
  if (e.ino != 0 && keep == kKeepAll) KeepAttrLocked(a, e.ino, e.attr, stamp);
  auto& names = a.names[p.entryParent];
  if (names.size() >= kKeptMax) {
    names.clear();
    a.whole.erase(p.entryParent);
  }
  names[p.entryName] = e.ino;
}

void KeepAttr(const Pending& p, const struct stat& st, int keep) {
  if (keep != kKeepAll || !current) return;
  Answers& a = current->answers;
  std::lock_guard<std::mutex> lock(a.mutex);
  if (a.enabled) KeepAttrLocked(a, p.ino, st, p.change ? UINT64_MAX : p.stamp);
}

void AfterReply() {
  Session* s = current;
  if (s && s->destroyWhenIdle && s->pending.empty()) {
    fuse_session_destroy(s->se);
    s->se = nullptr;
    s->destroyWhenIdle = false;
  }
}

double Num(const Napi::Object& o, const char* key, double fallback = 0) {
  Napi::Value v = o.Get(key);
  return v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : fallback;
}

struct timespec ToTimespec(double ms) {
  struct timespec t {};
  double sec = std::floor(ms / 1000);
  t.tv_sec = static_cast<time_t>(sec);
  long ns = static_cast<long>((ms - sec * 1000) * 1e6);
  t.tv_nsec = ns < 0 ? 0 : ns > 999999999 ? 999999999 : ns;
  return t;
}

struct stat ToStat(Napi::Env env, Napi::Value value) {
  if (!value.IsObject()) throw Napi::TypeError::New(env, "attributes object expected");
  Napi::Object o = value.As<Napi::Object>();
  struct stat st {};
  st.st_ino = static_cast<ino_t>(Num(o, "ino"));
  st.st_mode = static_cast<mode_t>(Num(o, "mode"));
  st.st_nlink = static_cast<nlink_t>(Num(o, "nlink", 1));
  st.st_uid = static_cast<uid_t>(Num(o, "uid"));
  st.st_gid = static_cast<gid_t>(Num(o, "gid"));
  st.st_size = static_cast<off_t>(Num(o, "size"));
  st.st_blksize = static_cast<blksize_t>(Num(o, "blksize", 4096));
  st.st_blocks = static_cast<blkcnt_t>(Num(o, "blocks"));
  st.st_atim = ToTimespec(Num(o, "atimeMs"));
  st.st_mtim = ToTimespec(Num(o, "mtimeMs"));
  st.st_ctim = ToTimespec(Num(o, "ctimeMs"));
  st.st_rdev = static_cast<dev_t>(Num(o, "rdev"));
  return st;
}

fuse_entry_param ToEntry(Napi::Env env, Napi::Value value) {
  if (!value.IsObject()) throw Napi::TypeError::New(env, "entry object expected");
  Napi::Object o = value.As<Napi::Object>();
  fuse_entry_param e{};
  e.ino = static_cast<fuse_ino_t>(Num(o, "ino"));
  e.generation = 0;
  e.attr = ToStat(env, o.Get("attr"));
  e.attr_timeout = Num(o, "attrTimeout");
  e.entry_timeout = Num(o, "entryTimeout");
  return e;
}

void FillOpen(const Napi::CallbackInfo& info, size_t at, fuse_file_info* fi) {
  Napi::Env env = info.Env();
  if (info.Length() <= at || !info[at].IsObject()) throw Napi::TypeError::New(env, "open options expected");
  Napi::Object o = info[at].As<Napi::Object>();
  fi->fh = static_cast<uint64_t>(Num(o, "fh"));
  fi->direct_io = o.Get("directIo").ToBoolean() ? 1 : 0;
  fi->keep_cache = o.Get("keepCache").ToBoolean() ? 1 : 0;
  fi->cache_readdir = o.Get("cacheDir").ToBoolean() ? 1 : 0;
}

// Every reply validates its arguments before taking the request: a bad call leaves the
// request pending (JavaScript may still answer it properly) and throws.

Napi::Value ReplyErr(const Napi::CallbackInfo& info) {
  if (info.Length() < 2 || !info[1].IsNumber()) throw Napi::TypeError::New(info.Env(), "errno expected");
  int err = info[1].As<Napi::Number>().Int32Value();
  if (err < 0 || err > 4095) err = EIO;
  fuse_reply_err(TakePending(info, err == 0).req, err);
  AfterReply();
  return info.Env().Undefined();
}

Napi::Value ReplyEntry(const Napi::CallbackInfo& info) {
  fuse_entry_param e = ToEntry(info.Env(), info[1]);
  int keep = KeepArg(info, 2);
  Pending p = TakePending(info, true, e.ino);
  KeepEntry(p, e, keep);
  fuse_reply_entry(p.req, &e);
  AfterReply();
  return info.Env().Undefined();
}

Napi::Value ReplyCreate(const Napi::CallbackInfo& info) {
  fuse_entry_param e = ToEntry(info.Env(), info[1]);
  fuse_file_info fi{};
  FillOpen(info, 2, &fi);
  int keep = KeepArg(info, 3);
  Pending p = TakePending(info, true, e.ino);
  // Open here: its attributes are JavaScript's (buffered writes), only its name is kept.
  KeepEntry(p, e, keep == kKeepNothing ? kKeepNothing : kKeepName);
  fuse_reply_create(p.req, &e, &fi);
  AfterReply();
  return info.Env().Undefined();
}

Napi::Value ReplyAttr(const Napi::CallbackInfo& info) {
  struct stat st = ToStat(info.Env(), info[1]);
  double timeout = info.Length() > 2 && info[2].IsNumber() ? info[2].As<Napi::Number>().DoubleValue() : 0;
  int keep = KeepArg(info, 3);
  Pending p = TakePending(info);
  KeepAttr(p, st, keep);
  fuse_reply_attr(p.req, &st, timeout);
  AfterReply();
  return info.Env().Undefined();
}

Napi::Value ReplyReadlink(const Napi::CallbackInfo& info) {
  if (info.Length() < 2 || !info[1].IsString()) throw Napi::TypeError::New(info.Env(), "link target expected");
  std::string target = info[1].As<Napi::String>().Utf8Value();
  fuse_reply_readlink(Take(info), target.c_str());
  AfterReply();
  return info.Env().Undefined();
}

Napi::Value ReplyOpen(const Napi::CallbackInfo& info) {
  fuse_file_info fi{};
  FillOpen(info, 1, &fi);
  fuse_reply_open(Take(info), &fi);
  AfterReply();
  return info.Env().Undefined();
}

Napi::Value ReplyWrite(const Napi::CallbackInfo& info) {
  if (info.Length() < 2 || !info[1].IsNumber()) throw Napi::TypeError::New(info.Env(), "count expected");
  fuse_reply_write(Take(info), static_cast<size_t>(info[1].As<Napi::Number>().DoubleValue()));
  AfterReply();
  return info.Env().Undefined();
}

Napi::Value ReplyBuf(const Napi::CallbackInfo& info) {
  if (info.Length() < 2 || !info[1].IsBuffer()) throw Napi::TypeError::New(info.Env(), "buffer expected");
  Napi::Buffer<char> buf = info[1].As<Napi::Buffer<char>>();
  fuse_reply_buf(Take(info), buf.Data(), buf.Length());
  AfterReply();
  return info.Env().Undefined();
}

Napi::Value ReplyStatfs(const Napi::CallbackInfo& info) {
  if (info.Length() < 2 || !info[1].IsObject()) throw Napi::TypeError::New(info.Env(), "statfs object expected");
  Napi::Object o = info[1].As<Napi::Object>();
  struct statvfs st {};
  st.f_bsize = static_cast<unsigned long>(Num(o, "bsize", 4096));
  st.f_frsize = static_cast<unsigned long>(Num(o, "frsize", 4096));
  st.f_blocks = static_cast<fsblkcnt_t>(Num(o, "blocks"));
  st.f_bfree = static_cast<fsblkcnt_t>(Num(o, "bfree"));
  st.f_bavail = static_cast<fsblkcnt_t>(Num(o, "bavail"));
  st.f_files = static_cast<fsfilcnt_t>(Num(o, "files"));
  st.f_ffree = static_cast<fsfilcnt_t>(Num(o, "ffree"));
  st.f_favail = static_cast<fsfilcnt_t>(Num(o, "favail"));
  st.f_namemax = static_cast<unsigned long>(Num(o, "namemax", 255));
  fuse_reply_statfs(Take(info), &st);
  AfterReply();
  return info.Env().Undefined();
}

/** Numbers per entry in replyDirPacked's array (see binding.ts PACKED_FIELDS). */
constexpr size_t kPackedFields = 16;

/**
 * replyDirPacked(id, size, plus, names, nums): packs directory entries while they fit in `size`
 * bytes, from one string of the names joined by '/' (no name holds one) and one Float64Array of
 * kPackedFields numbers per entry: no property lookups per entry. Returns how many went in.
 */
Napi::Value ReplyDirPacked(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 5 || !info[1].IsNumber() || !info[3].IsString() || !info[4].IsTypedArray())
    throw Napi::TypeError::New(env, "replyDirPacked(id, size, plus, names, nums)");
  size_t size = static_cast<size_t>(info[1].As<Napi::Number>().DoubleValue());
  if (size > (1 << 20)) size = 1 << 20;
  bool plus = info[2].ToBoolean();
  std::string names = info[3].As<Napi::String>().Utf8Value();
  Napi::TypedArray typed = info[4].As<Napi::TypedArray>();
  if (typed.TypedArrayType() != napi_float64_array) throw Napi::TypeError::New(env, "Float64Array expected");
  Napi::Float64Array nums = typed.As<Napi::Float64Array>();
  size_t entries = nums.ElementLength() / kPackedFields;
  const double* n = nums.Data();
  std::vector<char> buf(size);
  size_t used = 0, start = 0;
  uint32_t count = 0;
  for (; count < entries && start <= names.size(); count++, n += kPackedFields) {
    size_t end = names.find('/', start);
    if (end == std::string::npos) end = names.size();
    std::string name = names.substr(start, end - start);
    start = end + 1;
    off_t off = static_cast<off_t>(n[1]);
    size_t need;
    if (plus) {
      fuse_entry_param e{};
      e.ino = static_cast<fuse_ino_t>(n[0]);
      e.attr.st_ino = static_cast<ino_t>(n[2]);
      e.attr.st_mode = static_cast<mode_t>(n[3]);
      e.attr.st_nlink = static_cast<nlink_t>(n[4]);
      e.attr.st_uid = static_cast<uid_t>(n[5]);
      e.attr.st_gid = static_cast<gid_t>(n[6]);
      e.attr.st_size = static_cast<off_t>(n[7]);
      e.attr.st_blocks = static_cast<blkcnt_t>(n[8]);
      e.attr.st_blksize = static_cast<blksize_t>(n[9]);
      e.attr.st_atim = ToTimespec(n[10]);
      e.attr.st_mtim = ToTimespec(n[11]);
      e.attr.st_ctim = ToTimespec(n[12]);
      e.entry_timeout = n[13];
      e.attr_timeout = n[14];
      e.attr.st_rdev = static_cast<dev_t>(n[15]);
      need = fuse_add_direntry_plus(nullptr, buf.data() + used, size - used, name.c_str(), &e, off);
    } else {
      struct stat st {};
      st.st_ino = static_cast<ino_t>(n[2]);
      st.st_mode = static_cast<mode_t>(n[3]);
      need = fuse_add_direntry(nullptr, buf.data() + used, size - used, name.c_str(), &st, off);
    }
    if (need > size - used) break;
    used += need;
  }
  fuse_reply_buf(Take(info), buf.data(), used);
  AfterReply();
  return Napi::Number::New(env, count);
}

// ---- notifications ----

void NotifierLoop(Session* s) {
  for (;;) {
    Notice n;
    bool last;
    {
      std::unique_lock<std::mutex> lock(s->mutex);
      s->wake.wait(lock, [s] { return s->stopNotifier || !s->notices.empty(); });
      if (s->notices.empty()) return;
      n = std::move(s->notices.front());
      s->notices.pop_front();
      last = s->notices.empty();
    }
    // ENOENT: the kernel holds nothing of it, which is the point anyway.
    if (n.entry) fuse_lowlevel_notify_inval_entry(s->se, n.ino, n.name.data(), n.name.size());
    else fuse_lowlevel_notify_inval_inode(s->se, n.ino, n.off, n.len);
    // Once the queue is drained: JavaScript learns every notice up to this one is done.
    if (last && s->hasNotified) {
      auto* seq = new uint64_t(n.seq);
      if (s->notified.NonBlockingCall(seq, [](Napi::Env env, Napi::Function fn, uint64_t* done) {
            double value = static_cast<double>(*done);
            delete done;
            if (env != nullptr) fn.Call({Napi::Number::New(env, value)});
          }) != napi_ok)
        delete seq;
    }
  }
}

/** Queues a notice; its sequence number (0 if dropped: the queue is full). */
uint64_t Enqueue(Notice notice) {
  std::lock_guard<std::mutex> lock(current->mutex);
  if (current->notices.size() > 100000) return 0;  // the kernel's caches time out anyway
  notice.seq = current->nextNotice++;
  uint64_t seq = notice.seq;
  current->notices.push_back(std::move(notice));
  current->wake.notify_one();
  return seq;
}

Napi::Value NotifyInvalEntry(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!current || current->ended) return Napi::Boolean::New(env, false);
  if (info.Length() < 2 || !info[0].IsNumber() || !info[1].IsString()) throw Napi::TypeError::New(env, "notifyInvalEntry(parent, name)");
  uint64_t seq = Enqueue({0, true, static_cast<fuse_ino_t>(info[0].As<Napi::Number>().DoubleValue()), info[1].As<Napi::String>().Utf8Value(), 0, 0});
  return Napi::Number::New(env, static_cast<double>(seq));
}

Napi::Value NotifyInvalInode(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!current || current->ended) return Napi::Boolean::New(env, false);
  if (info.Length() < 1 || !info[0].IsNumber()) throw Napi::TypeError::New(env, "notifyInvalInode(ino, off?, len?)");
  int64_t off = info.Length() > 1 && info[1].IsNumber() ? info[1].As<Napi::Number>().Int64Value() : 0;
  int64_t len = info.Length() > 2 && info[2].IsNumber() ? info[2].As<Napi::Number>().Int64Value() : 0;
  uint64_t seq = Enqueue({0, false, static_cast<fuse_ino_t>(info[0].As<Napi::Number>().DoubleValue()), std::string(), off, len});
  return Napi::Number::New(env, static_cast<double>(seq));
}

// ---- answers (JavaScript's control) ----

/** answersValidFor(ms): what is kept may answer for `ms` from now (the lease's time left); <= 0 drops it all. */
Napi::Value AnswersValidFor(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!current) return env.Undefined();
  double ms = info.Length() > 0 && info[0].IsNumber() ? info[0].As<Napi::Number>().DoubleValue() : 0;
  Answers& a = current->answers;
  std::lock_guard<std::mutex> lock(a.mutex);
  if (!(ms > 0)) {
    a.enabled = false;
    a.DropAll();
    a.dirChanged.clear();
    a.inoChanged.clear();
    a.floor = ++a.stamp + 1;
    return env.Undefined();
  }
  a.enabled = true;
  a.validUntil = Clock::now() + std::chrono::microseconds(static_cast<int64_t>(ms * 1000));
  return env.Undefined();
}

/** answersDrop(ino, name?): a directory's names (name given: '' or any) or an inode's attributes; answersDrop() everything. */
Napi::Value AnswersDrop(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!current) return env.Undefined();
  Answers& a = current->answers;
  std::lock_guard<std::mutex> lock(a.mutex);
  // Answers read before the drop, put after it, are refused (their stamps are older).
  uint64_t now = ++a.stamp;
  if (info.Length() < 1 || !info[0].IsNumber()) {
    a.DropAll();
    a.dirChanged.clear();
    a.inoChanged.clear();
    a.floor = now + 1;
    return env.Undefined();
  }
  auto ino = static_cast<fuse_ino_t>(info[0].As<Napi::Number>().DoubleValue());
  if (info.Length() > 1 && info[1].IsString()) {
    a.names.erase(ino);
    a.whole.erase(ino);
    a.dirChanged[ino] = now;
  } else {
    a.DropAttr(ino);
    a.inoChanged[ino] = now;
  }
  return env.Undefined();
}

/** answersStamp(): the stamp of now, for a later answersPutAttr (refused if what it names changed since). */
Napi::Value AnswersStamp(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!current) return Napi::Number::New(env, 0);
  std::lock_guard<std::mutex> lock(current->answers.mutex);
  return Napi::Number::New(env, static_cast<double>(++current->answers.stamp));
}

/** answersPutAttr(stamp, attr): keeps an inode's attributes read after `stamp` was taken (not as a reply). */
Napi::Value AnswersPutAttr(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsNumber()) throw Napi::TypeError::New(env, "answersPutAttr(stamp, attr)");
  struct stat st = ToStat(env, info[1]);
  if (!current) return env.Undefined();
  Answers& a = current->answers;
  std::lock_guard<std::mutex> lock(a.mutex);
  if (a.enabled) KeepAttrLocked(a, st.st_ino, st, static_cast<uint64_t>(info[0].As<Napi::Number>().DoubleValue()));
  return env.Undefined();
}

/**
 * answersPutDir(stamp, parent, names, nums, whole?): keeps a directory's entries read after `stamp`
 * (names joined by '/', nums as replyDirPacked's: nodeid 0 = keep the name only); `whole`: they
 * are all its names (Answers.whole). Returns whether they were kept (false: something changed since).
 */
Napi::Value AnswersPutDir(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 4 || !info[0].IsNumber() || !info[1].IsNumber() || !info[2].IsString() || !info[3].IsTypedArray())
    throw Napi::TypeError::New(env, "answersPutDir(stamp, parent, names, nums)");
  Napi::TypedArray typed = info[3].As<Napi::TypedArray>();
  if (typed.TypedArrayType() != napi_float64_array) throw Napi::TypeError::New(env, "Float64Array expected");
  Napi::Float64Array nums = typed.As<Napi::Float64Array>();
  std::string names = info[2].As<Napi::String>().Utf8Value();
  if (!current) return env.Undefined();
  auto stamp = static_cast<uint64_t>(info[0].As<Napi::Number>().DoubleValue());
  auto parent = static_cast<fuse_ino_t>(info[1].As<Napi::Number>().DoubleValue());
  size_t entries = nums.ElementLength() / kPackedFields;
  const double* n = nums.Data();
  bool whole = info.Length() > 4 && info[4].ToBoolean();
  Answers& a = current->answers;
  std::lock_guard<std::mutex> lock(a.mutex);
  if (!a.enabled || !Fresh(a.dirBusy, a.dirChanged, a.floor, parent, stamp)) return Napi::Boolean::New(env, false);
  auto& kept = a.names[parent];
  if (kept.size() + entries > kKeptMax) kept.clear();
  size_t start = 0;
  size_t put = 0;
  for (size_t i = 0; i < entries && start <= names.size(); i++, n += kPackedFields) {
    size_t end = names.find('/', start);
    if (end == std::string::npos) end = names.size();
    std::string name = names.substr(start, end - start);
    start = end + 1;
    auto ino = static_cast<fuse_ino_t>(n[2]);
    if (ino == 0) continue;
    kept[name] = ino;
    put++;
    if (n[0] == 0) continue;
    struct stat st {};
    st.st_ino = static_cast<ino_t>(n[2]);
    st.st_mode = static_cast<mode_t>(n[3]);
    st.st_nlink = static_cast<nlink_t>(n[4]);
    st.st_uid = static_cast<uid_t>(n[5]);
    st.st_gid = static_cast<gid_t>(n[6]);
    st.st_size = static_cast<off_t>(n[7]);
    st.st_blocks = static_cast<blkcnt_t>(n[8]);
    st.st_blksize = static_cast<blksize_t>(n[9]);
    st.st_atim = ToTimespec(n[10]);
    st.st_mtim = ToTimespec(n[11]);
    st.st_ctim = ToTimespec(n[12]);
    st.st_rdev = static_cast<dev_t>(n[15]);
    KeepAttrLocked(a, ino, st, stamp);
  }
  if (whole && put == entries) a.whole.insert(parent);
  else a.whole.erase(parent);
  return Napi::Boolean::New(env, true);
}

/** answersTakeServed(): [ino, lookups, ...] answered on the loop thread since the last call, and `hits` so far as the last number. */
Napi::Value AnswersTakeServed(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!current) return Napi::Float64Array::New(env, 1);
  Answers& a = current->answers;
  std::lock_guard<std::mutex> lock(a.mutex);
  Napi::Float64Array out = Napi::Float64Array::New(env, a.served.size() * 2 + 1);
  size_t i = 0;
  for (auto& kv : a.served) {
    out[i++] = static_cast<double>(kv.first);
    out[i++] = static_cast<double>(kv.second);
  }
  out[i] = static_cast<double>(a.hits.load());
  a.served.clear();
  return out;
}

// ---- mount / unmount ----

void LoopMain(Session* s) {
  fuse_session_loop(s->se);
  auto* r = new Request();
  r->op = Op::Ended;
  if (s->tsfn.NonBlockingCall(r) != napi_ok) delete r;
}

void StopNotifier(Session* s) {
  {
    std::lock_guard<std::mutex> lock(s->mutex);
    s->stopNotifier = true;
    s->notices.clear();
  }
  s->wake.notify_one();
  if (s->notifier.joinable()) s->notifier.join();
  if (s->hasNotified) {
    s->hasNotified = false;
    s->notified.Release();
  }
}

/** At process exit with the mount still up: detach it, so no dead mount is left behind. */
void Cleanup(void*) {
  Session* s = current;
  if (!s || s->ended || !s->se) return;
  fuse_session_exit(s->se);
  fuse_session_unmount(s->se);
  // The loop thread may still sit in read(): the process ends it.
  s->loop.detach();
  {
    std::lock_guard<std::mutex> lock(s->mutex);
    s->stopNotifier = true;
  }
  s->wake.notify_one();
  s->notifier.detach();
  current = nullptr;
}

/** mount(mountpoint, options: string[] (-o values), handler, { writeback, maxWrite, onNotified? }) */
Napi::Value Mount(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (current) throw Napi::Error::New(env, "this process already serves a mount");
  if (info.Length() < 3 || !info[0].IsString() || !info[1].IsArray() || !info[2].IsFunction())
    throw Napi::TypeError::New(env, "mount(mountpoint, options, handler, settings?)");
  auto* s = new Session();
  Napi::Function onNotified;
  s->mountpoint = info[0].As<Napi::String>().Utf8Value();
  if (info.Length() > 3 && info[3].IsObject()) {
    Napi::Object o = info[3].As<Napi::Object>();
    s->writeback = o.Get("writeback").ToBoolean();
    double mw = Num(o, "maxWrite", 1 << 20);
    s->maxWrite = static_cast<unsigned>(mw < 4096 ? 4096 : mw > (1 << 20) ? (1 << 20) : mw);
    if (o.Get("onNotified").IsFunction()) onNotified = o.Get("onNotified").As<Napi::Function>();
  }
  std::vector<std::string> args = {"strata"};
  Napi::Array options = info[1].As<Napi::Array>();
  for (uint32_t i = 0; i < options.Length(); i++) {
    args.push_back("-o");
    args.push_back(options.Get(i).ToString().Utf8Value());
  }
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  fuse_args fargs = FUSE_ARGS_INIT(static_cast<int>(argv.size()), argv.data());
  fuse_lowlevel_ops ops = MakeOps();
  s->se = fuse_session_new(&fargs, &ops, sizeof(ops), s);
  if (!s->se) {
    delete s;
    throw Napi::Error::New(env, "fuse_session_new failed (bad mount options?)");
  }
  if (fuse_session_mount(s->se, s->mountpoint.c_str()) != 0) {
    fuse_session_destroy(s->se);
    delete s;
    throw Napi::Error::New(env, "cannot mount (is fuse3 installed and /dev/fuse usable?)");
  }
  s->tsfn = Tsfn::New(env, info[2].As<Napi::Function>(), "strata-fuse", 0, 1);
  // The mount's own timers keep the process alive while it should be.
  s->tsfn.Unref(env);
  if (!onNotified.IsEmpty()) {
    s->notified = Napi::ThreadSafeFunction::New(env, onNotified, "strata-fuse-notified", 0, 1);
    s->notified.Unref(env);
    s->hasNotified = true;
  }
  current = s;
  s->notifier = std::thread(NotifierLoop, s);
  s->loop = std::thread(LoopMain, s);
  return env.Undefined();
}

/**
 * After the kernel ended the session (the handler saw "ended"): joins the threads and frees
 * the session once every request still pending is answered.
 */
Napi::Value Close(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Session* s = current;
  if (!s) return env.Undefined();
  if (!s->ended) throw Napi::Error::New(env, "still mounted: unmount first");
  if (s->loop.joinable()) s->loop.join();
  StopNotifier(s);
  s->tsfn.Release();
  if (s->pending.empty()) {
    fuse_session_destroy(s->se);
    s->se = nullptr;
  } else {
    s->destroyWhenIdle = true;  // answers to the remaining requests go nowhere, harmlessly
  }
  return env.Undefined();
}

/** Unmounts through libfuse (umount2 as root, fusermount3 otherwise). */
Napi::Value Unmount(const Napi::CallbackInfo& info) {
  Session* s = current;
  if (s && !s->ended && s->se) {
    fuse_session_exit(s->se);
    fuse_session_unmount(s->se);
  }
  return info.Env().Undefined();
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("mount", Napi::Function::New(env, Mount));
  exports.Set("unmount", Napi::Function::New(env, Unmount));
  exports.Set("close", Napi::Function::New(env, Close));
  exports.Set("replyErr", Napi::Function::New(env, ReplyErr));
  exports.Set("replyEntry", Napi::Function::New(env, ReplyEntry));
  exports.Set("replyCreate", Napi::Function::New(env, ReplyCreate));
  exports.Set("replyAttr", Napi::Function::New(env, ReplyAttr));
  exports.Set("replyReadlink", Napi::Function::New(env, ReplyReadlink));
  exports.Set("replyOpen", Napi::Function::New(env, ReplyOpen));
  exports.Set("replyWrite", Napi::Function::New(env, ReplyWrite));
  exports.Set("replyBuf", Napi::Function::New(env, ReplyBuf));
  exports.Set("replyStatfs", Napi::Function::New(env, ReplyStatfs));
  exports.Set("replyDirPacked", Napi::Function::New(env, ReplyDirPacked));
  exports.Set("packedFields", Napi::Number::New(env, static_cast<double>(kPackedFields)));
  exports.Set("notifyInvalEntry", Napi::Function::New(env, NotifyInvalEntry));
  exports.Set("notifyInvalInode", Napi::Function::New(env, NotifyInvalInode));
  exports.Set("answersValidFor", Napi::Function::New(env, AnswersValidFor));
  exports.Set("answersDrop", Napi::Function::New(env, AnswersDrop));
  exports.Set("answersStamp", Napi::Function::New(env, AnswersStamp));
  exports.Set("answersPutAttr", Napi::Function::New(env, AnswersPutAttr));
  exports.Set("answersPutDir", Napi::Function::New(env, AnswersPutDir));
  exports.Set("answersTakeServed", Napi::Function::New(env, AnswersTakeServed));
  exports.Set("fuseVersion", Napi::Number::New(env, fuse_version()));
  napi_add_env_cleanup_hook(env, Cleanup, nullptr);
  return exports;
}

}  // namespace

NODE_API_MODULE(strata_fuse3, Init)
