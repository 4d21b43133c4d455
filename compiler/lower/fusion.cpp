#include "compiler/lower/fusion.h"

#include <algorithm>
#include <functional>
#include <map>
#include <set>
#include <stdexcept>

#include "compiler/lower/lower_ctx.h"
#include "compiler/lower/lower_program.h"
#include "compiler/ops/registry.h"

namespace kiln::lower {

namespace {

// The scalar function an op's lowering would emit as one elementwise kernel,
// if that is all it emits (so the op can live inside a fused loop).
struct Captured {
  LowerCtx::ElementwiseFn f;
  std::string comment;
  bool ok = false;
};

// Only ops declared elementwise get here; their lowering must be exactly one
// elementwise kernel, which is a bug in the op's registration otherwise.
Captured capture(const Graph& g, NodeId id) {
  const Node& n = g.node(id);
  Captured c;
  const OpDef* def = OpRegistry::get().find(n.op);
  if (!def || def->pattern != OpPattern::elementwise || !def->lower) return c;
  Program scratch_program;
  LowerCtx ctx(scratch_program, g, id);
  for (NodeId in : n.inputs) ctx.in.push_back(BufRef{-1, g.node(in).type.dtype, g.node(in).type.shape});
  ctx.out = BufRef{-1, n.type.dtype, n.type.shape};
  int calls = 0;
  ctx.capture_elementwise = [&](const LowerCtx::ElementwiseFn& f, const std::string& comment) {
    c.f = f;
    c.comment = comment;
    ++calls;
  };
  def->lower(ctx);
  if (calls != 1 || !ctx.kernels.empty())
    throw std::logic_error("op '" + n.op + "' is registered as elementwise but its lowering does not emit one "
                           "elementwise kernel (%" + n.name + ")");
  c.ok = true;
  return c;
}

std::string pct(const Graph& g, NodeId id) { return "%" + g.node(id).name; }

std::string list_names(const Graph& g, const std::vector<NodeId>& ids) {
  std::string s;
  for (NodeId id : ids) s += (s.empty() ? "" : ", ") + pct(g, id);
  return s;
}

}  // namespace

bool FusionPlan::internal(NodeId id) const {
  int gi = group_of.at(static_cast<size_t>(id));
  if (gi < 0) return false;
  const auto& outs = groups[static_cast<size_t>(gi)].outputs;
  return std::find(outs.begin(), outs.end(), id) == outs.end();
}

bool FusionPlan::places_group(NodeId id) const {
  int gi = group_of.at(static_cast<size_t>(id));
  return gi >= 0 && groups[static_cast<size_t>(gi)].members.back() == id;
}

std::vector<std::pair<size_t, int>> FusionPlan::inlined_inputs(const Graph& g, NodeId consumer) const {
  std::vector<std::pair<size_t, int>> out;
  const auto& inputs = g.node(consumer).inputs;
  for (size_t slot = 0; slot < inputs.size(); ++slot) {
    int gi = group_of.at(static_cast<size_t>(inputs[slot]));
    if (gi >= 0 && groups[static_cast<size_t>(gi)].into == consumer) out.push_back({slot, gi});
  }
  return out;
}

NodeId FusionPlan::in_place_param(NodeId value) const {
  for (auto& [v, p] : in_place)
    if (v == value) return p;
  return kNoNode;
}

FusionPlan plan_fusion(const Graph& g, const std::vector<std::vector<bool>>& needed_by,
                       const std::vector<bool>& must_store, const std::vector<std::pair<NodeId, NodeId>>& updates) {
  const size_t n = g.nodes.size();
  // Readers of values: a shape-only reader (dim_size) needs no stored input.
  auto users = g.users();
  for (auto& readers : users)
    readers.erase(std::remove_if(readers.begin(), readers.end(),
                                 [&](NodeId u) { return OpRegistry::get().find(g.node(u).op)->reads_shape_only; }),
                  readers.end());
  std::vector<bool> needed(n, false), fusable(n, false);
  for (auto& mine : needed_by)
    for (size_t i = 0; i < n; ++i) needed[i] = needed[i] || mine[i];
  for (size_t i = 0; i < n; ++i)
    if (needed[i]) fusable[i] = capture(g, static_cast<NodeId>(i)).ok;
  auto same_entries = [&](size_t a, size_t b) {
    for (auto& mine : needed_by)
      if (mine[a] != mine[b]) return false;
    return true;
  };

  FusionPlan plan;
  std::vector<std::vector<NodeId>> members;  // candidate groups, singletons included
  std::vector<int> grp(n, -1);
  auto note = [&](const std::string& s) { plan.why.push_back(s); };
  for (size_t i = 0; i < n; ++i) {
    if (!needed[i]) continue;
    const Node& node = g.nodes[i];
    const NodeId id = static_cast<NodeId>(i);
    if (!fusable[i]) {
      // Say why an elementwise producer feeding this node stays a separate kernel.
      for (NodeId in : node.inputs)
        if (fusable[static_cast<size_t>(in)])
          note("not fused: " + pct(g, in) + " -> " + pct(g, id) + ": " + node.op +
               " is not elementwise (it reads " + pct(g, in) + " from memory)");
      continue;
    }
    int chosen = -1;
    for (NodeId in : node.inputs) {
      const size_t ii = static_cast<size_t>(in);
      if (!fusable[ii]) {
        const OpDef* producer = OpRegistry::get().find(g.nodes[ii].op);
        if (producer->pattern == OpPattern::contraction && node.type.shape == g.nodes[ii].type.shape)
          note(g.nodes[ii].op + " epilogue: " + pct(g, id) + " (" + node.op + ") runs in the pass right after the GEMM of " +
               pct(g, in));
        continue;
      }
      int gi = grp[ii];
      if (gi < 0 || gi == chosen) continue;
      std::string reason;
      if (g.nodes[ii].type.shape != node.type.shape) {
        reason = "different iteration space (" + shape_str(g.nodes[ii].type.shape) + " vs " +
                 shape_str(node.type.shape) + ")";
      } else if (!same_entries(ii, i)) {
        reason = "needed by different entry points";
      } else {
        // The group's kernel moves to this node: no member may have a reader
        // outside the group that runs before it.
        for (NodeId m : members[static_cast<size_t>(gi)])
          for (NodeId u : users[static_cast<size_t>(m)])
            if (u != id && u < id && grp[static_cast<size_t>(u)] != gi && needed[static_cast<size_t>(u)] &&
                reason.empty())
              reason = pct(g, m) + " is also read by " + pct(g, u) + ", which runs before " + pct(g, id);
      }
      if (!reason.empty()) {
        note("not fused: " + pct(g, in) + " -> " + pct(g, id) + ": " + reason);
        continue;
      }
      if (chosen < 0) {
        chosen = gi;
        continue;
      }
      // A second input's group qualifies too (e.g. Adam's m and v feeding the
      // param update): both merge, so one pass reads and writes all three.
      auto& into_group = members[static_cast<size_t>(chosen)];
      for (NodeId m : members[static_cast<size_t>(gi)]) grp[static_cast<size_t>(m)] = chosen;
      into_group.insert(into_group.end(), members[static_cast<size_t>(gi)].begin(), members[static_cast<size_t>(gi)].end());
      std::sort(into_group.begin(), into_group.end());
      members[static_cast<size_t>(gi)].clear();
    }
    if (chosen < 0) {
      chosen = static_cast<int>(members.size());
      members.emplace_back();
    }
    members[static_cast<size_t>(chosen)].push_back(id);
    grp[i] = chosen;
  }

  // Consumers (reductions, concat) reading a group whose every value stays
  // inside it: the group is computed in the consumer's loop (a flat index
  // addresses every operand).
  std::vector<NodeId> into(members.size(), kNoNode);
  auto is_update_value = [&](NodeId m) {
    for (auto& u : updates)
      if (u.second == m) return true;
    return false;
  };
  // Why consumer c cannot compute group gi (whose last node p it reads) inline; empty: it can.
  auto why_not_inline = [&](size_t c, NodeId p, int gi) -> std::string {
    const auto& ms = members[static_cast<size_t>(gi)];
    if (ms.back() != p) return pct(g, p) + " is not its group's last node";
    if (!same_entries(c, static_cast<size_t>(p))) return "needed by different entry points";
    for (NodeId m : ms) {
      if (must_store[static_cast<size_t>(m)] || is_update_value(m)) return pct(g, m) + " is returned by the step";
      for (NodeId u : users[static_cast<size_t>(m)])
        if (needed[static_cast<size_t>(u)] && u != static_cast<NodeId>(c) && grp[static_cast<size_t>(u)] != gi)
          return pct(g, m) + " is also read by " + pct(g, u);
      for (NodeId in : g.node(m).inputs) {
        const Shape& s = g.node(in).type.shape;
        if (grp[static_cast<size_t>(in)] != gi && s != g.node(p).type.shape && numel(s, 2) != 1)
          return pct(g, in) + " is broadcast (the consumer indexes its input flat)";
      }
    }
    return "";
  };
  // When the whole group cannot go inside consumer c (an early member is
  // stored for other readers), its tail may: p and the members only the tail
  // reads. The rest stays a kernel of its own and stores what the tail reads
  // (batch norm's x - mean is stored for the backward pass; its square, read
  // only by the variance's sum, need not be). Empty: no such tail.
  auto inline_tail = [&](size_t c, NodeId p, int gi) -> std::vector<NodeId> {
    const auto& ms = members[static_cast<size_t>(gi)];
    if (ms.back() != p || ms.size() < 2 || !same_entries(c, static_cast<size_t>(p))) return {};
    auto only_read_by = [&](NodeId m, const std::set<NodeId>& readers) {
      if (must_store[static_cast<size_t>(m)] || is_update_value(m)) return false;
      bool any = false;
      for (NodeId u : users[static_cast<size_t>(m)]) {
        if (!needed[static_cast<size_t>(u)]) continue;
        if (!readers.count(u)) return false;
        any = true;
      }
      return any;
    };
    if (!only_read_by(p, {static_cast<NodeId>(c)})) return {};
    std::set<NodeId> tail{p};
    for (auto it = ms.rbegin() + 1; it != ms.rend(); ++it)
      if (only_read_by(*it, tail)) tail.insert(*it);
    if (tail.size() == ms.size()) return {};
    for (NodeId m : tail)
      for (NodeId in : g.node(m).inputs) {
        const Shape& s = g.node(in).type.shape;
        if (!tail.count(in) && s != g.node(p).type.shape && numel(s, 2) != 1) return {};
      }
    return {tail.begin(), tail.end()};
  };
  for (size_t i = 0; i < n; ++i) {
    const Node& r = g.nodes[i];
    if (!needed[i] || !OpRegistry::get().find(r.op)->inlines_elementwise_input) continue;
    for (const NodeId p : r.inputs) {
      const int gi = grp[static_cast<size_t>(p)];
      if (gi < 0 || into[static_cast<size_t>(gi)] == static_cast<NodeId>(i)) continue;
      std::string reason = why_not_inline(i, p, gi);
      if (reason.empty()) {
        into[static_cast<size_t>(gi)] = static_cast<NodeId>(i);
        continue;
      }
      const std::vector<NodeId> tail = inline_tail(i, p, gi);
      if (tail.empty()) {
        note("not computed inline: " + pct(g, p) + " -> " + pct(g, static_cast<NodeId>(i)) + " (" + r.op + "): " + reason);
        continue;
      }
      // The tail becomes a group of its own, computed inside the consumer.
      auto& rest = members[static_cast<size_t>(gi)];
      rest.erase(std::remove_if(rest.begin(), rest.end(),
                                [&](NodeId m) { return std::count(tail.begin(), tail.end(), m) > 0; }),
                 rest.end());
      const int ti = static_cast<int>(members.size());
      members.push_back(tail);
      into.push_back(static_cast<NodeId>(i));
      for (NodeId m : tail) grp[static_cast<size_t>(m)] = ti;
    }
  }

  plan.group_of.assign(n, -1);
  for (size_t mi = 0; mi < members.size(); ++mi) {
    const auto& ms = members[mi];
    if (ms.empty()) continue;  // merged into another group
    if (into[mi] != kNoNode) {
      FusionGroup fg;
      fg.members = ms;
      fg.shape = g.node(ms.back()).type.shape;
      fg.into = into[mi];
      for (NodeId m : ms) plan.group_of[static_cast<size_t>(m)] = static_cast<int>(plan.groups.size());
      note("computed inline: " + list_names(g, ms) + " computed inside " + pct(g, fg.into) + " (" +
           g.node(fg.into).op + "), never stored");
      plan.groups.push_back(std::move(fg));
      continue;
    }
    if (ms.size() < 2) continue;
    FusionGroup fg;
    fg.members = ms;
    fg.shape = g.node(ms.back()).type.shape;
    std::vector<NodeId> internal;
    const int gi = static_cast<int>(plan.groups.size());
    for (NodeId m : ms) {
      bool outside = must_store[static_cast<size_t>(m)];
      for (NodeId u : users[static_cast<size_t>(m)])
        outside = outside || (needed[static_cast<size_t>(u)] && grp[static_cast<size_t>(u)] != grp[static_cast<size_t>(m)]);
      outside = outside || is_update_value(m);
      (outside ? fg.outputs : internal).push_back(m);
      plan.group_of[static_cast<size_t>(m)] = gi;
    }
    note("fused " + std::to_string(ms.size()) + " elementwise nodes into one loop over " + shape_str(fg.shape) +
         ": " + list_names(g, ms) + "; stored: " + list_names(g, fg.outputs) +
         (internal.empty() ? "" : "; kept in registers: " + list_names(g, internal)));
    plan.groups.push_back(std::move(fg));
  }

  // In-place updates: the kernel computing a param's new value stores it into
  // the param when every other reader of the old value has run by then and
  // the kernel itself reads the param only at the element it writes.
  auto position = [&](NodeId id) {
    int gi = plan.group_of[static_cast<size_t>(id)];
    if (gi < 0) return id;
    const FusionGroup& fg = plan.groups[static_cast<size_t>(gi)];
    return fg.into != kNoNode ? fg.into : fg.members.back();
  };
  for (auto& [param, value] : updates) {
    if (param == value || !needed[static_cast<size_t>(value)]) continue;
    std::string reason;
    const size_t vi = static_cast<size_t>(value);
    if (g.node(param).op != "param") reason = pct(g, param) + " is not a param";
    else if (!fusable[vi]) reason = g.node(value).op + " is not elementwise";
    else if (g.node(value).type.shape != g.node(param).type.shape) reason = "different shapes";
    else if (must_store[static_cast<size_t>(param)] || must_store[vi]) reason = "an entry returns the old or new value";
    const NodeId at = position(value);
    const int gi = plan.group_of[vi];
    // Readers of a view of the param (a reshape of it) read the param's bytes.
    std::vector<std::pair<NodeId, bool>> readers;  // (reader, through a view)
    std::function<void(NodeId, bool)> add_readers = [&](NodeId of, bool through_view) {
      for (NodeId u : users[static_cast<size_t>(of)]) {
        if (!needed[static_cast<size_t>(u)]) continue;
        if (view_offset(g, u)) add_readers(u, true);
        else readers.push_back({u, through_view});
      }
    };
    add_readers(param, false);
    for (auto [u, through_view] : readers) {
      if (!reason.empty()) continue;
      bool same_kernel = u == value || (gi >= 0 && plan.group_of[static_cast<size_t>(u)] == gi);
      if (same_kernel && through_view) {
        reason = pct(g, u) + " reads the param through a view in the same kernel";
      } else if (same_kernel) {
        if (g.node(u).type.shape != g.node(param).type.shape) reason = pct(g, u) + " broadcasts the param";
      } else if (position(u) >= at) {
        reason = pct(g, u) + " reads the old value after the update's kernel";
      }
    }
    if (!reason.empty()) {
      note("copy after the step: " + pct(g, param) + " <- " + pct(g, value) + ": " + reason);
      continue;
    }
    plan.in_place.push_back({value, param});
    note("in place: " + pct(g, value) + " is stored straight into " + pct(g, param) + " (no copy kernel)");
  }
  return plan;
}

namespace {

// The loops of a broadcasting elementwise kernel over `full`: its dimensions
// of size > 1, adjacent ones merged where every operand (trailing-aligned,
// size 1 broadcasting) holds both or neither. A bias over [N,H,W,C] runs as
// [N*H*W] x [C]: two loops, the bias read at the inner index alone.
std::vector<std::vector<size_t>> merged_loops(const Shape& full, const std::vector<Shape>& operands) {
  auto holds = [&](const Shape& s, size_t d) {
    const size_t lead = full.size() - s.size();
    return d >= lead && s[d - lead] != 1;
  };
  std::vector<std::vector<size_t>> loops;
  for (size_t d = 0; d < full.size(); ++d) {
    if (full[d] == 1) continue;
    bool alike = !loops.empty();
    for (const Shape& s : operands) alike = alike && holds(s, d) == holds(s, loops.back().back());
    if (alike) loops.back().push_back(d);
    else loops.push_back({d});
  }
  return loops;
}

}  // namespace

Kernel lower_fused_group(Program& p, const Graph& g, const FusionGroup& grp, const std::vector<int>& buffer_of) {
  const NodeId last = grp.members.back();
  Kernel k;
  k.kind = KernelKind::Loops;
  k.node = g.node(last).name;
  k.origin = g.node(last).origin;
  std::map<NodeId, Captured> fns;
  std::set<NodeId> in_group(grp.members.begin(), grp.members.end());
  std::map<NodeId, int> uses;  // uses inside the group: shared values become locals
  for (NodeId m : grp.members) {
    fns[m] = capture(g, m);
    if (!fns[m].ok) throw std::logic_error("fusion: " + g.node(m).name + " is not elementwise");
    k.comment += (k.comment.empty() ? "fused: " : "; ") + ("%" + g.node(m).name + " = " + fns[m].comment);
    for (NodeId in : g.node(m).inputs)
      if (in_group.count(in)) ++uses[in];
  }
  auto ref = [&](NodeId id) {
    int b = buffer_of.at(static_cast<size_t>(id));
    if (b < 0) throw std::logic_error("fusion: no buffer for " + g.node(id).name);
    const Buffer& buf = p.buffers.at(static_cast<size_t>(b));
    return BufRef{b, buf.dtype, buf.shape};
  };
  // One flat loop when every operand is either the full iteration space or a
  // single element; otherwise a loop per dimension with broadcasting reads.
  bool flat = true;
  for (NodeId m : grp.members)
    for (NodeId in : g.node(m).inputs)
      if (!in_group.count(in)) {
        const Shape& s = g.node(in).type.shape;
        flat = flat && (s == grp.shape || numel(s, 2) == 1);
      }
  KernelBuilder kb(k);
  const bool parallel = numel(grp.shape, p.max_batch) >= kParallelMinElements;
  std::set<int> written;
  for (NodeId o : grp.outputs) written.insert(buffer_of.at(static_cast<size_t>(o)));
  auto body = [&](const std::function<E(const BufRef&)>& index) {
    std::map<NodeId, E> value;
    // A param updated in place is read into a local before any store, so
    // every member sees its old value.
    for (NodeId m : grp.members)
      for (NodeId in : g.node(m).inputs)
        if (!in_group.count(in) && !value.count(in) && written.count(buffer_of.at(static_cast<size_t>(in)))) {
          BufRef r = ref(in);
          value[in] = kb.let("old_" + c_identifier(g.node(in).name), kb.load(r, index(r)));
        }
    for (NodeId m : grp.members) {
      std::vector<E> args;
      for (NodeId in : g.node(m).inputs) {
        if (in_group.count(in) || value.count(in)) {
          args.push_back(value.at(in));
          continue;
        }
        BufRef r = ref(in);
        const Buffer& buf = p.buffers.at(static_cast<size_t>(r.id));
        if (buf.storage == Storage::Constant && buf.data.size() == 1) args.push_back(lit(buf.data[0], r.scalar()));
        else args.push_back(kb.load(r, index(r)));
      }
      E v = fns[m].f(args);
      if (uses[m] > 1) v = kb.let(c_identifier(g.node(m).name), v);
      value[m] = v;
      if (std::find(grp.outputs.begin(), grp.outputs.end(), m) != grp.outputs.end()) {
        BufRef out = ref(m);
        kb.store(out, index(out), v);
      }
    }
  };
  if (flat) {
    BufRef full{-1, DType::f32, grp.shape};
    kb.loop("i", 0, full.size(), [&](E i) {
      body([&](const BufRef& r) { return r.shape == grp.shape ? i : E(0); });
    }, parallel);
  } else {
    std::vector<Shape> operands;
    for (NodeId o : grp.outputs) operands.push_back(ref(o).shape);
    for (NodeId m : grp.members)
      for (NodeId in : g.node(m).inputs)
        if (!in_group.count(in)) operands.push_back(ref(in).shape);
    const std::vector<std::vector<size_t>> loops = merged_loops(grp.shape, operands);
    std::vector<E> extents;
    for (const auto& dims : loops) {
      E n = 1;
      for (size_t d : dims) n = n * (grp.shape[d] == kOpenDim ? E(batch()) : E(grp.shape[d]));
      extents.push_back(n);
    }
    const size_t rank = grp.shape.size();
    kb.loops(extents, [&](const std::vector<E>& idx) {
      body([&](const BufRef& r) {
        // Trailing dimensions align (numpy); a size-1 dimension broadcasts.
        // A merged loop steps through its dimensions at the stride of the
        // last one: the operand holds them all, contiguous, or none.
        const size_t lead = rank - static_cast<size_t>(r.rank());
        E at = 0;
        for (size_t l = 0; l < loops.size(); ++l) {
          const size_t last = loops[l].back();
          if (last >= lead && r.shape[last - lead] != 1) at = at + idx[l] * r.stride(static_cast<int>(last - lead));
        }
        return at;
      });
    }, parallel);
  }
  return k;
}

namespace {

// e with every load of `placeholder` replaced by `at(index)`.
ExprP substitute(const ExprP& e, int placeholder, const std::function<ExprP(const ExprP&)>& at) {
  if (!e) return e;
  if (e->kind == ExprKind::Load && e->id == placeholder) return at(substitute(e->args[0], placeholder, at));
  bool changed = false;
  std::vector<ExprP> args;
  for (const ExprP& a : e->args) {
    args.push_back(substitute(a, placeholder, at));
    changed = changed || args.back() != a;
  }
  if (!changed) return e;
  auto copy = std::make_shared<Expr>(*e);
  copy->args = std::move(args);
  return copy;
}

void substitute(std::vector<Stmt>& body, int placeholder, const std::function<ExprP(const ExprP&)>& at) {
  for (Stmt& s : body) {
    s.lo = substitute(s.lo, placeholder, at);
    s.hi = substitute(s.hi, placeholder, at);
    s.index = substitute(s.index, placeholder, at);
    s.value = substitute(s.value, placeholder, at);
    substitute(s.body, placeholder, at);
  }
}

}  // namespace

void inline_group(const Program& p, const Graph& g, const FusionGroup& grp, const std::vector<int>& buffer_of,
                  int placeholder, NodeId read, Kernel& k) {
  std::map<NodeId, Captured> fns;
  std::set<NodeId> in_group(grp.members.begin(), grp.members.end());
  for (NodeId m : grp.members) fns[m] = capture(g, m);
  substitute(k.body, placeholder, [&](const ExprP& index) {
    std::map<NodeId, E> value;
    for (NodeId m : grp.members) {
      std::vector<E> args;
      for (NodeId in : g.node(m).inputs) {
        if (in_group.count(in)) {
          args.push_back(value.at(in));
          continue;
        }
        int b = buffer_of.at(static_cast<size_t>(in));
        const Buffer& buf = p.buffers.at(static_cast<size_t>(b));
        Scalar t = scalar_of(buf.dtype);
        if (buf.storage == Storage::Constant && buf.data.size() == 1) args.push_back(lit(buf.data[0], t));
        else args.push_back(E(load(b, t, buf.shape == grp.shape ? index : c_int(0))));
      }
      value[m] = fns[m].f(args);
      if (m == read) break;  // members are in order: what `read` needs is computed
    }
    return value.at(read).p;
  });
  k.comment += " of (" + fns[read].comment + ", computed inline)";
}

std::string print_fusion_why(const std::vector<std::string>& why) {
  std::string s;
  for (const std::string& line : why) s += "// why: " + line + "\n";
  return s;
}

}  // namespace kiln::lower
