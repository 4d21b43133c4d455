#include "compiler/lower/memory_plan.h"

#include <algorithm>
#include <limits>
#include <map>
#include <set>

#include "compiler/lower/inject_bug.h"
#include "compiler/lower/lower_program.h"

namespace kiln::lower {

namespace {

int64_t aligned(int64_t v) { return (v + kBufferAlign - 1) / kBufferAlign * kBufferAlign; }

void expr_buffers(const ExprP& e, std::set<int>& out) {
  if (!e) return;
  if (e->kind == ExprKind::Load) out.insert(e->id);
  for (auto& a : e->args) expr_buffers(a, out);
}

void stmt_buffers(const Stmt& s, std::set<int>& all, std::set<int>* written) {
  expr_buffers(s.lo, all);
  expr_buffers(s.hi, all);
  expr_buffers(s.index, all);
  expr_buffers(s.value, all);
  if (s.kind == StmtKind::Store) {
    all.insert(s.target);
    if (written) written->insert(s.target);
  }
  for (auto& b : s.body) stmt_buffers(b, all, written);
}

std::set<int> direct_buffers(const Kernel& k, std::set<int>* written) {
  std::set<int> all;
  if (k.kind == KernelKind::Gemm) {
    const GemmSpec& g = k.gemm;
    for (int b : {g.a, g.b, g.c, g.scratch, g.packed_b})
      if (b >= 0) all.insert(b);
    for (const ExprP& e : {g.m, g.n, g.k}) expr_buffers(e, all);
    if (g.batch) expr_buffers(g.batch, all);
    if (written) {
      written->insert(g.packs_b ? g.packed_b : g.c);
      if (g.scratch >= 0) written->insert(g.scratch);
    }
  }
  for (auto& s : k.body) stmt_buffers(s, all, written);
  return all;
}

// A kernel reading a view reads its base's bytes: both are listed.
std::set<int> buffers_of(const Program& p, const Kernel& k, std::set<int>* written = nullptr) {
  std::set<int> all = direct_buffers(k, written);
  for (int b : std::set<int>(all))
    if (p.buffers[static_cast<size_t>(b)].is_view()) all.insert(p.buffers[static_cast<size_t>(b)].view_of);
  return all;
}

// ---- renaming a buffer (expressions are immutable and shared) ----

ExprP rename(const ExprP& e, int from, int to) {
  if (!e) return e;
  bool changed = e->kind == ExprKind::Load && e->id == from;
  std::vector<ExprP> args;
  for (auto& a : e->args) {
    args.push_back(rename(a, from, to));
    changed = changed || args.back() != a;
  }
  if (!changed) return e;
  auto copy = std::make_shared<Expr>(*e);
  if (copy->kind == ExprKind::Load && copy->id == from) copy->id = to;
  copy->args = std::move(args);
  return copy;
}

void rename(Stmt& s, int from, int to) {
  s.lo = rename(s.lo, from, to);
  s.hi = rename(s.hi, from, to);
  s.index = rename(s.index, from, to);
  s.value = rename(s.value, from, to);
  if (s.kind == StmtKind::Store && s.target == from) s.target = to;
  for (auto& b : s.body) rename(b, from, to);
}

// ---- in-place updates ----

// `k` is `value[i] = f(..., param[i], ...)` over each element once (one flat
// loop, or one scalar store): writing `param` instead of `value` reads every
// old element before overwriting it, and nothing else.
bool elementwise_into(const Kernel& k, int value, int param) {
  if (k.kind != KernelKind::Loops || k.body.size() != 1) return false;
  const Stmt* store = &k.body[0];
  const Stmt* loop = nullptr;
  if (store->kind == StmtKind::Loop) {
    loop = store;
    if (loop->body.size() != 1 || !is_const(loop->lo)) return false;
    store = &loop->body[0];
  }
  if (store->kind != StmtKind::Store || store->target != value) return false;
  if (loop && !same_expr(store->index, var(loop->var))) return false;
  std::set<int> in_index;
  expr_buffers(store->index, in_index);
  if (loop) expr_buffers(loop->hi, in_index);
  if (in_index.count(param) || in_index.count(value)) return false;
  std::set<int> read;
  expr_buffers(store->value, read);
  if (read.count(value)) return false;
  return loads_only_at(store->value, param, store->index);
}

// Entries by graph (init and other graph-less entries have no arena buffers).
std::map<const Graph*, std::vector<Entry*>> groups_of(Program& p) {
  std::map<const Graph*, std::vector<Entry*>> groups;
  for (Entry& e : p.entries)
    if (e.graph) groups[e.graph].push_back(&e);
  return groups;
}

// Turns the safe updates of an entry into in-place writes and adds the copy
// kernels no longer needed to `dropped`. `shared`: kernels other entries of
// the group also run; an update whose value one of them touches stays a copy.
void make_updates_in_place(Program& p, Entry& e, const std::set<int>& shared, std::set<int>& dropped) {
  std::vector<std::set<int>> access(e.kernels.size()), writes(e.kernels.size());
  for (size_t i = 0; i < e.kernels.size(); ++i)
    access[i] = buffers_of(p, p.kernels[static_cast<size_t>(e.kernels[i])], &writes[i]);
  std::set<int> used_values;
  std::vector<Entry::Update*> chosen;
  std::vector<size_t> writer_of;
  for (Entry::Update& u : e.updates) {
    const Buffer& v = p.buffers[static_cast<size_t>(u.value)];
    if (v.storage != Storage::Arena || used_values.count(u.value)) continue;
    // A view of the new value would still point at the buffer renamed away.
    if (p.viewed(u.value)) continue;
    // The one kernel that writes the new value.
    size_t writer = e.kernels.size();
    int writers = 0;
    for (size_t i = 0; i < e.kernels.size(); ++i)
      if (writes[i].count(u.value)) writer = i, ++writers;
    if (writers != 1) continue;
    bool seen_elsewhere = false;
    for (size_t i = 0; i < e.kernels.size(); ++i)
      seen_elsewhere = seen_elsewhere || (shared.count(e.kernels[i]) && access[i].count(u.value));
    if (seen_elsewhere) continue;
    if (!elementwise_into(p.kernels[static_cast<size_t>(e.kernels[writer])], u.value, u.param)) continue;
    // Nobody touches the old value after it is overwritten (its own copy aside).
    bool later = false;
    for (size_t i = writer + 1; i < e.kernels.size() && !later; ++i)
      later = e.kernels[i] != u.kernel && access[i].count(u.param);
    if (later) continue;
    used_values.insert(u.value);
    chosen.push_back(&u);
  }
  for (Entry::Update* u : chosen) {
    for (int k : e.kernels) rename_buffer(p.kernels[static_cast<size_t>(k)], u->value, u->param);
    dropped.insert(u->kernel);
    u->kernel = -1;
  }
}

// Removes kernels no entry runs any more, renumbering the entries' lists.
void drop_kernels(Program& p, const std::set<int>& dropped) {
  if (dropped.empty()) return;
  std::vector<int> new_index(p.kernels.size(), -1);
  std::vector<Kernel> kept;
  for (size_t i = 0; i < p.kernels.size(); ++i) {
    if (dropped.count(static_cast<int>(i))) continue;
    new_index[i] = static_cast<int>(kept.size());
    kept.push_back(std::move(p.kernels[i]));
  }
  p.kernels = std::move(kept);
  for (Entry& e : p.entries) {
    std::vector<int> ks;
    for (int k : e.kernels)
      if (new_index[static_cast<size_t>(k)] >= 0) ks.push_back(new_index[static_cast<size_t>(k)]);
    e.kernels = std::move(ks);
    for (auto& u : e.updates)
      if (u.kernel >= 0) u.kernel = new_index[static_cast<size_t>(u.kernel)];
  }
}

// ---- placement ----

struct Placed {
  int64_t offset, end;
  int first, last;
};

// Greedy by size, best fit: the largest buffers go first; each takes the
// smallest gap between the buffers already placed that are live at the same
// time (or the top of them).
int64_t place(Program& p, std::vector<LiveRange> ranges) {
  std::stable_sort(ranges.begin(), ranges.end(),
                   [](const LiveRange& a, const LiveRange& b) { return a.bytes > b.bytes; });
  std::vector<Placed> placed;
  int64_t top = 0;
  for (const LiveRange& r : ranges) {
    std::vector<std::pair<int64_t, int64_t>> busy;
    for (const Placed& q : placed)
      if (q.first <= r.last && r.first <= q.last) busy.push_back({q.offset, q.end});
    std::sort(busy.begin(), busy.end());
    int64_t best = -1, best_gap = std::numeric_limits<int64_t>::max(), cursor = 0;
    for (auto& [b, e] : busy) {
      int64_t gap = b - cursor;
      if (gap >= r.bytes && gap < best_gap) best = cursor, best_gap = gap;
      cursor = std::max(cursor, e);
    }
    if (best < 0) best = cursor;
    p.buffers[static_cast<size_t>(r.buffer)].offset = best;
    placed.push_back({best, best + r.bytes, r.first, r.last});
    top = std::max(top, best + r.bytes);
  }
  return top;
}

}  // namespace

void rename_buffer(Kernel& k, int from, int to) {
  for (int* b : {&k.gemm.a, &k.gemm.b, &k.gemm.c, &k.gemm.scratch, &k.gemm.packed_b})
    if (*b == from) *b = to;
  for (auto& s : k.body) rename(s, from, to);
  for (int& w : k.writes)
    if (w == from) w = to;
}

bool loads_only_at(const ExprP& e, int buffer, const ExprP& index) {
  if (!e) return true;
  if (e->kind == ExprKind::Load && e->id == buffer && !same_expr(e->args[0], index)) return false;
  for (auto& a : e->args)
    if (!loads_only_at(a, buffer, index)) return false;
  return true;
}

std::set<int> kernel_buffers(const Program& p, const Kernel& k, std::set<int>* written) { return buffers_of(p, k, written); }

std::vector<LiveRange> arena_live_ranges(const Program& p, const Graph* graph) {
  std::set<int> kernels, arena;
  for (const Entry& e : p.entries) {
    if (e.graph != graph) continue;
    kernels.insert(e.kernels.begin(), e.kernels.end());
    arena.insert(e.arena_buffers.begin(), e.arena_buffers.end());
  }
  std::map<int, LiveRange> live;
  std::map<NodeId, int> buffer_of_node;
  for (int b : arena) {
    const Buffer& buf = p.buffers[static_cast<size_t>(b)];
    if (buf.storage == Storage::Arena && buf.node != kNoNode) buffer_of_node[buf.node] = b;
  }
  for (const Buffer& view : p.buffers)  // a view node's value lives in its base
    if (view.is_view() && view.node != kNoNode && arena.count(view.view_of)) buffer_of_node[view.node] = view.view_of;
  auto touch = [&](int b, int pos) {
    if (!arena.count(b) || p.buffers[static_cast<size_t>(b)].storage != Storage::Arena) return;
    auto [it, fresh] = live.try_emplace(b, LiveRange{b, pos, pos, aligned(p.buffers[static_cast<size_t>(b)].bytes(p.max_batch))});
    it->second.first = std::min(it->second.first, pos);
    it->second.last = std::max(it->second.last, pos);
  };
  for (int k : kernels) {
    const Kernel& kernel = p.kernels[static_cast<size_t>(k)];
    std::set<int> written;
    for (int b : buffers_of(p, kernel, &written)) touch(b, k);
    // check-numerics refills a node's arena inputs before each of its kernels.
    if (!graph) continue;
    for (int w : written) {
      NodeId n = p.buffers[static_cast<size_t>(w)].node;
      if (n == kNoNode) continue;
      for (NodeId in : graph->node(n).inputs) {
        auto it = buffer_of_node.find(in);
        if (it != buffer_of_node.end() && live.count(it->second)) touch(it->second, k);
      }
    }
  }
  std::vector<LiveRange> out;
  for (auto& [b, r] : live) out.push_back(r);
  if (injected_bug("alias-still-read"))
    for (LiveRange& r : out) r.last = std::max(r.first, r.last - 1);
  return out;
}

void plan_memory(Program& p) {
  auto groups = groups_of(p);
  std::set<int> dropped;
  for (auto& [graph, entries] : groups) {
    int64_t sum = 0;
    for (int b : entries[0]->arena_buffers) sum += aligned(p.buffers[static_cast<size_t>(b)].bytes(p.max_batch));
    p.intermediate_bytes = std::max(p.intermediate_bytes, sum);
    // Kernels are shared within a group: an entry's updates go in place only
    // through kernels no other entry runs.
    for (Entry* e : entries) {
      if (e->updates.empty()) continue;
      std::set<int> shared;
      for (Entry* other : entries)
        if (other != e) shared.insert(other->kernels.begin(), other->kernels.end());
      make_updates_in_place(p, *e, shared, dropped);
    }
  }
  drop_kernels(p, dropped);
  p.arena_bytes = 0;
  for (auto& [graph, entries] : groups) {
    std::vector<LiveRange> ranges = arena_live_ranges(p, graph);
    std::set<int> used;
    for (auto& r : ranges) used.insert(r.buffer);
    int64_t bytes = place(p, ranges);
    for (Buffer& b : p.buffers)
      if (b.is_view() && b.storage == Storage::Arena)
        b.offset = p.buffers[static_cast<size_t>(b.view_of)].offset + b.view_offset * static_cast<int64_t>(dtype_size(b.dtype));
    for (Entry* e : entries) {
      std::vector<int> kept;
      for (int b : e->arena_buffers)
        if (used.count(b)) kept.push_back(b);
      e->arena_buffers = std::move(kept);
      e->arena_bytes = bytes;
    }
    p.arena_bytes = std::max(p.arena_bytes, bytes);
  }
}

}  // namespace kiln::lower
