#include "compiler/lower/lower_program.h"

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <functional>
#include <map>
#include <set>
#include <stdexcept>

#include "compiler/lower/fusion.h"
#include "compiler/lower/gemm_blocking.h"
#include "compiler/lower/gemm_epilogue.h"
#include "compiler/lower/loop_verify.h"
#include "compiler/lower/lower_ctx.h"
#include "compiler/lower/memory_plan.h"
#include "compiler/lower/split_reduction.h"
#include "compiler/ops/registry.h"
#include "compiler/passes/batch_rows.h"
#include "compiler/passes/passes.h"

namespace kiln::lower {

std::string c_identifier(const std::string& name) {
  std::string out;
  for (char ch : name) {
    if (std::isalnum(static_cast<unsigned char>(ch))) out += ch;
    else if (ch == '/') out += "__";
    else out += '_';
  }
  return out;
}

static int64_t align_up(int64_t v) { return (v + kBufferAlign - 1) / kBufferAlign * kBufferAlign; }

std::vector<EntrySpec> forward_entries(const Graph& g) {
  std::vector<std::string> all;
  for (auto& [name, id] : g.outputs) all.push_back(name);
  EntrySpec predict{"predict", &g, {}, {}};
  for (const char* want : {"probabilities", "logits"})
    if (predict.outputs.empty() && g.output(want) != kNoNode) predict.outputs = {want};
  if (predict.outputs.empty()) predict.outputs = all;
  return {predict, EntrySpec{"eval_step", &g, all, {}}};
}

namespace {

// Fill value of a param whose initializer is a constant, if it is one.
bool constant_init(const Node& param, double& value) {
  auto init = param.attrs.value("init", nlohmann::json::object());
  std::string kind = init.value("kind", std::string("zeros"));
  if (kind == "zeros") value = 0;
  else if (kind == "ones") value = 1;
  else if (kind == "constant") value = init.value("value", 0.0);
  else return false;
  return true;
}

class ProgramLowering {
 public:
  ProgramLowering(const std::string& name, const LowerOptions& opts) {
    p_.name = name;
    p_.max_batch = opts.max_batch;
    fuse_ = opts.fuse && !std::getenv("KILN_NO_FUSION");
    // (to measure what packing B once saves: the same program, packing per call)
    prepack_ = !std::getenv("KILN_NO_PREPACK");
    why_ = opts.why;
    if (opts.max_batch < 1) throw std::runtime_error("the maximum batch size must be at least 1");
  }

  void add_group(const std::vector<const EntrySpec*>& specs);
  void add_init();
  Program finish() { return std::move(p_); }

 private:
  int add_buffer(Buffer b) {
    p_.buffers.push_back(std::move(b));
    return static_cast<int>(p_.buffers.size() - 1);
  }
  int persistent(const Node& n);
  int node_buffer(const Graph& g, NodeId id, int input_slot);
  int view_buffer(const Graph& g, NodeId id, int base, int64_t offset);
  // A Param or State buffer, given the next bytes of its block.
  int add_persistent_bytes(Buffer b) {
    int64_t& top = b.storage == Storage::State ? p_.state_bytes : p_.param_bytes;
    b.offset = top;
    top = align_up(top + b.bytes(1));
    return add_buffer(std::move(b));
  }
  // A persistent (State) buffer outside the params and optimizer state.
  int prepared_buffer(const std::string& name, DType dtype, const Shape& shape, NodeId node) {
    Buffer b;
    b.name = name;
    b.dtype = dtype;
    b.shape = shape;
    b.node = node;
    b.storage = Storage::State;
    return add_persistent_bytes(std::move(b));
  }
  void place_arena(int buffer) {
    Buffer& b = p_.buffers[static_cast<size_t>(buffer)];
    b.offset = cursor_;
    cursor_ = align_up(cursor_ + b.bytes(p_.max_batch));
  }
  std::vector<int> add_kernels(std::vector<Kernel>& ks) {
    std::vector<int> ids;
    for (size_t i = 0; i < ks.size(); ++i) {
      Kernel& k = ks[i];
      int index = static_cast<int>(p_.kernels.size());
      k.name = "k" + std::to_string(index) + "_" + c_identifier(k.node) + (i ? "_" + std::to_string(i) : "");
      p_.kernels.push_back(std::move(k));
      ids.push_back(index);
    }
    return ids;
  }
  // A kernel copying `src` to `dst` element by element (same element count).
  Kernel copy_kernel(int src, int dst, const std::string& node, const std::string& comment);
  // Before each packed f32 gemm of `ks` whose B is ready when the entry
  // starts (ready_buffer), a kernel run once per parameter load that packs
  // op(B) into a State buffer the gemm then reads (GemmSpec::packed_b).
  void prepack_b(std::vector<Kernel>& ks, const std::function<bool(int)>& ready_buffer);
  // The loop kernels of one node's lowering that read only ready buffers
  // and write only the lowering's own scratch (from buffer `first_scratch`
  // on; a Winograd filter's transform) run once per parameter load: their
  // scratch becomes persistent, and ready. Returns the buffers made ready.
  std::set<int> hoist_param_kernels(std::vector<Kernel>& ks, int first_scratch,
                                    const std::function<bool(int)>& ready_buffer);

  Program p_;
  std::map<std::string, int> persistent_by_name_;
  int64_t cursor_ = 0;
  bool fuse_ = true;
  bool prepack_ = true;
  std::vector<std::string>* why_ = nullptr;
};

int ProgramLowering::persistent(const Node& n) {
  auto it = persistent_by_name_.find(n.name);
  if (it != persistent_by_name_.end()) {
    const Buffer& b = p_.buffers[static_cast<size_t>(it->second)];
    if (b.dtype != n.type.dtype || b.shape != n.type.shape)
      throw std::runtime_error("param '" + n.name + "' is " + type_str(n.type) + " in one graph but " +
                               type_str({b.dtype, b.shape}) + " in another");
    return it->second;
  }
  Buffer b;
  b.name = n.name;
  b.dtype = n.type.dtype;
  b.shape = n.type.shape;
  b.storage = n.attrs.value("role", std::string("param")) == "state" ? Storage::State : Storage::Param;
  int id = add_persistent_bytes(std::move(b));
  persistent_by_name_[n.name] = id;
  p_.persistent.push_back(id);
  return id;
}

int ProgramLowering::node_buffer(const Graph& g, NodeId id, int input_slot) {
  const Node& n = g.node(id);
  if (n.op == "param") return persistent(n);
  Buffer b;
  b.name = n.name;
  b.dtype = n.type.dtype;
  b.shape = n.type.shape;
  b.node = id;
  if (n.op == "input") {
    b.storage = Storage::Input;
    b.offset = input_slot;
    return add_buffer(std::move(b));
  }
  if (n.op == "constant") {
    b.storage = Storage::Constant;
    const auto& v = n.attrs.at("value");
    int64_t count = numel(n.type.shape);
    if (v.is_array()) for (auto& x : v) b.data.push_back(x.get<double>());
    else b.data.assign(static_cast<size_t>(count), v.get<double>());
    return add_buffer(std::move(b));
  }
  b.storage = Storage::Arena;
  int buf = add_buffer(std::move(b));
  place_arena(buf);
  return buf;
}

// Node `id`'s value as `base`'s elements from `offset` on (a constant's
// are copied: the code embeds them anyway).
int ProgramLowering::view_buffer(const Graph& g, NodeId id, int base, int64_t offset) {
  const Node& n = g.node(id);
  const Buffer from = p_.buffers[static_cast<size_t>(base)];
  Buffer b;
  b.name = n.name;
  b.dtype = n.type.dtype;
  b.shape = n.type.shape;
  b.node = id;
  b.storage = from.storage;
  b.offset = from.offset;
  if (from.storage == Storage::Constant) {
    auto first = from.data.begin() + offset;
    b.data.assign(first, first + numel(n.type.shape));
    return add_buffer(std::move(b));
  }
  b.view_of = from.is_view() ? from.view_of : base;
  b.view_offset = from.view_offset + offset;
  return add_buffer(std::move(b));
}

Kernel ProgramLowering::copy_kernel(int src, int dst, const std::string& node, const std::string& comment) {
  Kernel k;
  k.node = node;
  k.comment = comment;
  const Buffer& s = p_.buffers[static_cast<size_t>(src)];
  const Buffer& d = p_.buffers[static_cast<size_t>(dst)];
  BufRef from{src, s.dtype, s.shape}, to{dst, d.dtype, d.shape};
  KernelBuilder kb(k);
  bool parallel = numel(d.shape, p_.max_batch) >= kParallelMinElements;
  kb.loop("i", 0, to.size(), [&](E i) { kb.store(to, i, kb.load(from, i)); }, parallel);
  return k;
}

// Entries lowered from one graph share its kernels and arena layout: a node
// that several entries need is computed by one kernel. Kernels address step
// inputs by a slot shared by the group; each entry maps its own inputs onto
// the slots (Entry::input_slot).
void ProgramLowering::add_group(const std::vector<const EntrySpec*>& specs) {
  const Graph& g = *specs[0]->graph;
  cursor_ = 0;
  const size_t first_buffer = p_.buffers.size();
  std::vector<std::vector<bool>> needed_by;
  std::vector<std::vector<std::pair<std::string, NodeId>>> outs_of;
  std::vector<bool> needed(g.nodes.size(), false);
  for (const EntrySpec* spec : specs) {
    std::vector<NodeId> roots;
    std::vector<std::pair<std::string, NodeId>> outs;
    for (auto& o : spec->outputs) {
      NodeId id = g.output(o);
      if (id == kNoNode) id = g.find(o);
      if (id == kNoNode)
        throw std::runtime_error("entry " + spec->name + ": graph '" + g.name + "' has no output or node named '" + o + "'");
      outs.push_back({o, id});
      roots.push_back(id);
    }
    for (auto& [param, value] : spec->updates) roots.push_back(value), roots.push_back(param);
    std::vector<bool> mine(g.nodes.size(), false);
    for (NodeId r : roots) mine[static_cast<size_t>(r)] = true;
    for (size_t i = g.nodes.size(); i-- > 0;)
      if (mine[i])
        for (NodeId in : g.nodes[i].inputs) mine[static_cast<size_t>(in)] = true;
    for (size_t i = 0; i < mine.size(); ++i) needed[i] = needed[i] || mine[i];
    needed_by.push_back(std::move(mine));
    outs_of.push_back(std::move(outs));
  }

  // A group no entry of which writes persistent tensors (predict, eval_step)
  // computes values of params alone once per parameter load, into persistent
  // buffers, not on every call.
  bool reads_only = true;
  for (const EntrySpec* spec : specs) reads_only = reads_only && spec->updates.empty();
  std::vector<bool> prepared(g.nodes.size(), false);
  if (reads_only) {
    const auto only = param_only_nodes(g);
    for (size_t i = 0; i < g.nodes.size(); ++i) {
      const OpDef* def = OpRegistry::get().find(g.nodes[i].op);
      prepared[i] = only[i] && def && def->pattern != OpPattern::source;
    }
  }
  // ready: the value exists before the entry's per-call kernels run (a
  // param, a constant, a view of one, or a kernel run once per params).
  std::vector<bool> ready(g.nodes.size(), false);
  auto all_ready = [&](const std::vector<NodeId>& inputs, const std::vector<NodeId>& except) {
    return std::all_of(inputs.begin(), inputs.end(), [&](NodeId in) {
      return ready[static_cast<size_t>(in)] || std::find(except.begin(), except.end(), in) != except.end();
    });
  };
  auto& reg = OpRegistry::get();
  std::vector<int> buffer_of(g.nodes.size(), -1);
  std::vector<std::vector<int>> kernels_of(g.nodes.size());
  std::vector<NodeId> slot_nodes;  // the group's input slots, in graph order
  FusionPlan plan;
  plan.group_of.assign(g.nodes.size(), -1);
  if (fuse_) {
    std::vector<bool> must_store(g.nodes.size(), false);
    std::vector<std::pair<NodeId, NodeId>> updates;
    for (auto& outs : outs_of)
      for (auto& o : outs) must_store[static_cast<size_t>(o.second)] = true;
    for (const EntrySpec* spec : specs) updates.insert(updates.end(), spec->updates.begin(), spec->updates.end());
    plan = plan_fusion(g, needed_by, must_store, updates);
    if (why_)
      for (auto& line : plan.why) why_->push_back(g.name + ": " + line);
  }
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    if (!needed[i]) continue;
    NodeId id = static_cast<NodeId>(i);
    const Node& n = g.nodes[i];
    if (plan.internal(id)) continue;  // computed inside its group's kernel, never stored
    if (n.op == "input") slot_nodes.push_back(id);
    NodeId into = plan.in_place_param(id);
    if (into != kNoNode) {
      buffer_of[i] = buffer_of[static_cast<size_t>(into)];
    } else if (auto offset = view_offset(g, id); offset && buffer_of[static_cast<size_t>(n.inputs[0])] >= 0) {
      buffer_of[i] = view_buffer(g, id, buffer_of[static_cast<size_t>(n.inputs[0])], *offset);
      ready[i] = ready[static_cast<size_t>(n.inputs[0])];
      continue;  // no kernel: readers load the input's bytes
    } else if (prepared[i]) {
      buffer_of[i] = prepared_buffer("prepared:" + n.name, n.type.dtype, n.type.shape, id);
    } else {
      buffer_of[i] = node_buffer(g, id, static_cast<int>(slot_nodes.size()) - 1);
    }
    ready[i] = n.op == "param" || n.op == "constant";
    if (n.op == "input" || n.op == "param" || n.op == "constant") continue;
    if (plan.group_of[i] >= 0) {
      if (!plan.places_group(id)) continue;
      const FusionGroup& group = plan.groups[static_cast<size_t>(plan.group_of[i])];
      std::vector<Kernel> fused{lower_fused_group(p_, g, group, buffer_of)};
      bool once = true;
      for (NodeId m : group.members) once = once && prepared[static_cast<size_t>(m)] && all_ready(g.node(m).inputs, group.members);
      fused[0].once_per_params = once;
      for (NodeId m : group.members) ready[static_cast<size_t>(m)] = once;
      kernels_of[i] = add_kernels(fused);
      continue;
    }
    const OpDef* def = reg.find(n.op);
    if (!def || !def->lower)
      throw std::runtime_error("node '" + n.name + "' (JSON node " + n.origin + "): op '" + n.op + "' has no lowering");
    LowerCtx ctx(p_, g, id);
    const int scratch_from = static_cast<int>(p_.buffers.size());
    for (NodeId in : n.inputs) {
      if (buffer_of[static_cast<size_t>(in)] < 0) {  // a group this node computes inline (fusion)
        ctx.in.push_back(BufRef{inlined_input_buffer(ctx.in.size()), g.node(in).type.dtype, g.node(in).type.shape});
        continue;
      }
      const Buffer& b = p_.buffers[static_cast<size_t>(buffer_of[static_cast<size_t>(in)])];
      ctx.in.push_back(BufRef{buffer_of[static_cast<size_t>(in)], b.dtype, b.shape});
    }
    ctx.out = BufRef{buffer_of[i], n.type.dtype, n.type.shape};
    try {
      def->lower(ctx);
    } catch (const std::exception& ex) {
      throw std::runtime_error("lowering node '" + n.name + "' (JSON node " + n.origin + ", op " + n.op + "): " + ex.what());
    }
    for (auto [slot, gi] : plan.inlined_inputs(g, id))
      for (Kernel& k : ctx.kernels)
        inline_group(p_, g, plan.groups[static_cast<size_t>(gi)], buffer_of, inlined_input_buffer(slot), n.inputs[slot], k);
    ready[i] = prepared[i] && plan.inlined_inputs(g, id).empty() && all_ready(n.inputs, {});
    for (Kernel& k : ctx.kernels) k.once_per_params = ready[i];
    auto ready_buffer = [&](int buffer) {
      for (size_t j = 0; j < i; ++j)
        if (ready[j] && buffer_of[j] == buffer) return true;
      return false;
    };
    std::set<int> hoisted;
    if (reads_only && !ready[i]) hoisted = hoist_param_kernels(ctx.kernels, scratch_from, ready_buffer);
    for (size_t b = 0; b < p_.buffers.size(); ++b)
      if (p_.buffers[b].storage == Storage::Arena && !p_.buffers[b].is_view() && p_.buffers[b].offset < 0)
        place_arena(static_cast<int>(b));
    if (prepack_ && reads_only && !ready[i])
      prepack_b(ctx.kernels, [&](int buffer) { return hoisted.count(buffer) || ready_buffer(buffer); });
    kernels_of[i] = add_kernels(ctx.kernels);
  }
  std::vector<int> arena;
  for (size_t b = first_buffer; b < p_.buffers.size(); ++b)
    if (p_.buffers[b].storage == Storage::Arena && !p_.buffers[b].is_view()) arena.push_back(static_cast<int>(b));
  p_.arena_bytes = std::max(p_.arena_bytes, cursor_);

  for (size_t s = 0; s < specs.size(); ++s) {
    const EntrySpec& spec = *specs[s];
    Entry e;
    e.name = spec.name;
    e.graph = &g;
    e.slot_count = static_cast<int>(slot_nodes.size());
    for (size_t slot = 0; slot < slot_nodes.size(); ++slot) {
      NodeId id = slot_nodes[slot];
      if (!needed_by[s][static_cast<size_t>(id)]) continue;
      const Node& n = g.node(id);
      e.inputs.push_back({n.name, n.type.dtype, n.type.shape, buffer_of[static_cast<size_t>(id)]});
      e.input_slot.push_back(static_cast<int>(slot));
    }
    for (size_t i = 0; i < g.nodes.size(); ++i)
      if (needed_by[s][i]) e.kernels.insert(e.kernels.end(), kernels_of[i].begin(), kernels_of[i].end());
    std::vector<Kernel> tail;
    const auto& outs = outs_of[s];
    for (size_t j = 0; j < outs.size(); ++j) {
      const Node& n = g.node(outs[j].second);
      Buffer b;
      b.name = "output:" + outs[j].first;
      b.dtype = n.type.dtype;
      b.shape = n.type.shape;
      b.storage = Storage::Output;
      b.offset = static_cast<int64_t>(j);
      int dst = add_buffer(std::move(b));
      e.outputs.push_back({outs[j].first, n.type.dtype, n.type.shape, dst});
      tail.push_back(copy_kernel(buffer_of[static_cast<size_t>(outs[j].second)], dst, "output_" + outs[j].first,
                                 "output '" + outs[j].first + "' <- %" + n.name));
    }
    for (auto& [param, value] : spec.updates) {
      int dst = buffer_of[static_cast<size_t>(param)], src = buffer_of[static_cast<size_t>(value)];
      e.written.push_back(dst);
      if (dst == src) continue;  // computed in place
      const Node& pn = g.node(param);
      if (g.node(value).type != pn.type)
        throw std::runtime_error("update of '" + pn.name + "' has type " + type_str(g.node(value).type) +
                                 ", expected " + type_str(pn.type));
      e.updates.push_back({dst, src, static_cast<int>(tail.size())});
      tail.push_back(copy_kernel(src, dst, "update_" + pn.name, "%" + pn.name + " <- %" + g.node(value).name +
                                                                    " (in place, after every other kernel)"));
    }
    auto tail_ids = add_kernels(tail);
    for (auto& u : e.updates) u.kernel = tail_ids[static_cast<size_t>(u.kernel)];
    e.kernels.insert(e.kernels.end(), tail_ids.begin(), tail_ids.end());
    e.arena_buffers = arena;
    e.arena_bytes = cursor_;
    e.writes_persistent = !spec.updates.empty();
    std::vector<NodeId> out_nodes;
    for (auto& o : outs) out_nodes.push_back(o.second);
    e.rows_mixed = e.writes_persistent ? "it updates params or state" : rows_mixed(g, needed_by[s], out_nodes);
    bool prepares = false;
    for (int k : e.kernels) prepares = prepares || p_.kernels[static_cast<size_t>(k)].once_per_params;
    if (prepares) e.prepared_epoch = prepared_buffer("prepared epoch of " + e.name, DType::i64, {}, kNoNode);
    p_.entries.push_back(std::move(e));
  }
}

namespace {
bool reads_batch(const ExprP& e) {
  if (!e) return false;
  return e->kind == ExprKind::Batch || std::any_of(e->args.begin(), e->args.end(), reads_batch);
}
// Whether the statements depend on the call's batch size.
bool reads_batch(const std::vector<Stmt>& body) {
  return std::any_of(body.begin(), body.end(), [](const Stmt& st) {
    return reads_batch(st.lo) || reads_batch(st.hi) || reads_batch(st.index) || reads_batch(st.value) ||
           reads_batch(st.body);
  });
}
}  // namespace

std::set<int> ProgramLowering::hoist_param_kernels(std::vector<Kernel>& ks, int first_scratch,
                                                   const std::function<bool(int)>& ready_buffer) {
  std::set<int> made_ready;
  std::vector<std::set<int>> stores_of(ks.size()), buffers_of(ks.size());
  for (size_t i = 0; i < ks.size(); ++i) buffers_of[i] = kernel_buffers(p_, ks[i], &stores_of[i]);
  for (size_t i = 0; i < ks.size(); ++i) {
    if (ks[i].kind != KernelKind::Loops || stores_of[i].empty() || reads_batch(ks[i].body)) continue;
    // What it reads beside its own stores: ready before the entry.
    bool hoists = std::all_of(buffers_of[i].begin(), buffers_of[i].end(), [&](int b) {
      return stores_of[i].count(b) || made_ready.count(b) || ready_buffer(b);
    });
    for (int b : stores_of[i]) {
      const Buffer& buf = p_.buffers[static_cast<size_t>(b)];
      // The lowering's own scratch, of a size the batch does not change, written by this kernel alone.
      hoists = hoists && b >= first_scratch && buf.storage == Storage::Arena && !buf.is_view() &&
               std::find(buf.shape.begin(), buf.shape.end(), kOpenDim) == buf.shape.end();
      for (size_t j = 0; j < ks.size(); ++j) hoists = hoists && (j == i || !stores_of[j].count(b));
    }
    if (!hoists) continue;
    for (int b : stores_of[i]) {
      Buffer& buf = p_.buffers[static_cast<size_t>(b)];
      buf.storage = Storage::State;
      buf.offset = p_.state_bytes;
      p_.state_bytes = align_up(p_.state_bytes + buf.bytes(1));
      made_ready.insert(b);
    }
    ks[i].once_per_params = true;
  }
  return made_ready;
}

void ProgramLowering::prepack_b(std::vector<Kernel>& ks, const std::function<bool(int)>& ready_buffer) {
  std::vector<Kernel> out;
  for (Kernel& k : ks) {
    GemmSpec& g = k.gemm;
    // (windowed B is an image; a batch of products whose number the batch
    // size sets has Bs that differ per call: a constant number of them is
    // packed product by product, a Winograd convolution's 36 filters)
    const bool applies = k.kind == KernelKind::Gemm && !g.packs_b && g.packed_b < 0 && gemm_takes_packed_path(g, p_) &&
                         !g.windows_b && is_const(g.k) && (!g.batched() || g.stride_b == 0 || is_const(g.batch)) &&
                         ready_buffer(g.b);
    if (applies) {
      Kernel pack;
      pack.kind = KernelKind::Gemm;
      pack.node = k.node;
      pack.origin = k.origin;
      pack.comment = "op(B) of the product below, packed in its panels";
      const int64_t products = gemm_packed_products(g);
      g.packed_b = prepared_buffer("packed B of " + k.node, DType::f32,
                                   {products * gemm_packed_b_floats(g.n->ival, g.k->ival)}, kNoNode);
      GemmSpec& pg = pack.gemm;
      // The product's sizes choose the plan, hence the panels: the pack keeps them.
      pg.m = g.m, pg.n = g.n, pg.k = g.k;
      pg.b = g.b, pg.ldb = g.ldb, pg.trans_a = g.trans_a, pg.trans_b = g.trans_b;
      // (A batch of products chooses its tiles, hence the panels, as well.)
      if (g.batched()) pg.batch = g.batch, pg.stride_b = g.stride_b;
      pg.windows = g.windows;  // (A's form chooses the depth blocks: KernelEmitter::gemm_plan)
      pg.packed_b = g.packed_b;
      pg.packs_b = true;
      pack.writes = {g.packed_b};
      pack.once_per_params = true;
      out.push_back(std::move(pack));
    }
    out.push_back(std::move(k));
  }
  ks = std::move(out);
}

void ProgramLowering::add_init() {
  // init fills constant-initialized tensors itself; the caller supplies the
  // values of the others (drawn by the runtime or copied from a checkpoint).
  Entry e;
  e.name = "init";
  std::vector<Kernel> ks;
  std::vector<int> ids = p_.persistent;
  for (int id : ids) {
    const Buffer pb = p_.buffers[static_cast<size_t>(id)];
    const Graph* g = nullptr;
    for (auto& en : p_.entries)
      if (en.graph && en.graph->find(pb.name) != kNoNode) g = en.graph;
    double fill = 0;
    const Node* n = g ? &g->node(g->find(pb.name)) : nullptr;
    if (n && constant_init(*n, fill)) {
      Kernel k;
      k.node = "init_" + pb.name;
      k.comment = "%" + pb.name + " <- " + std::to_string(fill);
      KernelBuilder kb(k);
      BufRef to{id, pb.dtype, pb.shape};
      kb.loop("i", 0, to.size(), [&](E i) { kb.store(to, i, lit(fill, to.scalar())); });
      ks.push_back(std::move(k));
      continue;
    }
    Buffer in;
    in.name = "init:" + pb.name;
    in.dtype = pb.dtype;
    in.shape = pb.shape;
    in.storage = Storage::Input;
    in.offset = static_cast<int64_t>(e.inputs.size());
    int src = add_buffer(std::move(in));
    e.inputs.push_back({pb.name, pb.dtype, pb.shape, src});
    ks.push_back(copy_kernel(src, id, "init_" + pb.name, "%" + pb.name + " <- its initial value"));
  }
  e.kernels = add_kernels(ks);
  e.writes_persistent = true;
  e.rows_mixed = "it writes params and state";
  e.slot_count = static_cast<int>(e.inputs.size());
  for (size_t i = 0; i < e.inputs.size(); ++i) e.input_slot.push_back(static_cast<int>(i));
  p_.entries.insert(p_.entries.begin(), std::move(e));
}

}  // namespace

Program lower_program(const std::string& name, const std::vector<EntrySpec>& entries, const LowerOptions& opts) {
  ProgramLowering pl(name, opts);
  std::vector<const Graph*> graphs;
  for (const EntrySpec& e : entries) {
    if (!e.graph) throw std::runtime_error("entry " + e.name + " has no graph");
    if (std::find(graphs.begin(), graphs.end(), e.graph) == graphs.end()) graphs.push_back(e.graph);
  }
  for (const Graph* g : graphs) {
    std::vector<const EntrySpec*> group;
    for (const EntrySpec& e : entries)
      if (e.graph == g) group.push_back(&e);
    pl.add_group(group);
  }
  pl.add_init();
  Program p = pl.finish();
  if (opts.dump) *opts.dump << "// ---- Loop IR after lowering\n" << print_program(p);
  // The named loop passes (compiler/lower/loop_verify.h), each verified.
  LoopPipelineOptions passes{.fuse = opts.fuse && !std::getenv("KILN_NO_FUSION"), .why = opts.why, .dump = opts.dump};
  if (std::getenv("KILN_NO_GEMM_EPILOGUE")) passes.skip.push_back("fuse-gemm-epilogues");
  if (std::getenv("KILN_NO_ROW_EPILOGUE")) passes.skip.push_back("fuse-row-epilogues");
  run_loop_passes(p, passes);
  return p;
}

}  // namespace kiln::lower
