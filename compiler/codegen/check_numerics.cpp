#include "compiler/codegen/check_numerics.h"

#include <cmath>
#include <functional>
#include <cstring>
#include <random>
#include <set>
#include <sstream>
#include <stdexcept>

#include "compiler/ops/registry.h"

namespace kiln::codegen {

std::map<std::string, interp::Value> random_feeds(const lower::Entry& entry, int64_t batch, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::map<std::string, interp::Value> feeds;
  const Graph* g = entry.graph;
  auto users = g ? g->users() : std::vector<std::vector<NodeId>>{};
  for (const lower::EntryTensor& t : entry.inputs) {
    interp::Value v;
    v.dtype = t.dtype;
    v.shape = t.shape;
    for (auto& d : v.shape)
      if (d == kOpenDim) d = batch;
    v.data.resize(static_cast<size_t>(numel(v.shape)));
    int64_t classes = 2;
    NodeId id = g ? g->find(t.name) : kNoNode;
    if (id != kNoNode)
      for (NodeId u : users[static_cast<size_t>(id)])
        if (g->node(u).op == "one_hot") classes = g->node(u).attrs.at("depth").get<int64_t>();
    std::uniform_real_distribution<double> real(-1.0, 1.0);
    std::uniform_int_distribution<int64_t> label(0, classes - 1);
    for (auto& x : v.data) {
      if (is_float(t.dtype)) x = static_cast<float>(real(rng));
      else if (t.dtype == DType::boolean) x = static_cast<double>(rng() & 1);
      else x = static_cast<double>(label(rng));
    }
    feeds[t.name] = std::move(v);
  }
  return feeds;
}

namespace {

// The terms a reduction sums into each element of its result at this batch size (1 for other ops).
double summed_terms(const Graph& g, NodeId id, int64_t batch) {
  const Node& n = g.node(id);
  const OpDef* def = OpRegistry::get().find(n.op);
  if (!def || def->pattern != OpPattern::reduction || n.inputs.empty()) return 1;
  const int64_t out = numel(n.type.shape, batch), in = numel(g.node(n.inputs[0]).type.shape, batch);
  return out > 0 && in > out ? static_cast<double>(in) / static_cast<double>(out) : 1;
}

struct Comparison {
  double max_abs_diff = 0, max_abs_ref = 0;
  int64_t worst = -1;
  bool finite = true;
  int64_t first_nonfinite = -1;
};

Comparison compare(const interp::Value& jit, const interp::Value& ref) {
  Comparison c;
  for (size_t i = 0; i < ref.data.size(); ++i) {
    double r = ref.data[i], x = jit.data[i];
    if (std::isfinite(r)) c.max_abs_ref = std::max(c.max_abs_ref, std::fabs(r));
    if (!std::isfinite(x)) {
      bool same = std::isnan(x) ? std::isnan(r) : x == r;
      if (!same && c.finite) c.finite = false, c.first_nonfinite = static_cast<int64_t>(i);
      continue;
    }
    double d = std::isfinite(r) ? std::fabs(x - r) : INFINITY;
    if (d > c.max_abs_diff) c.max_abs_diff = d, c.worst = static_cast<int64_t>(i);
  }
  return c;
}

}  // namespace

NumericsReport check_numerics(const CompiledProgram& cp, Program& prog, const std::string& entry_name, int64_t batch,
                              const std::map<std::string, interp::Value>& feeds, double tolerance) {
  const lower::Program& p = cp.loops();
  const lower::Entry* e = p.entry(entry_name);
  if (!e) throw std::runtime_error("no entry point '" + entry_name + "'");
  if (!e->graph) throw std::runtime_error("entry '" + entry_name + "' has no graph to check against");
  const Graph& g = *e->graph;
  if (batch < 1 || batch > p.max_batch)
    throw std::runtime_error("batch " + std::to_string(batch) + " is outside 1.." + std::to_string(p.max_batch));

  // Persistent tensors and inputs, as the entry point would see them.
  for (const TensorInfo& t : prog.info().persistent) {
    auto it = feeds.find(t.name);
    if (it == feeds.end()) continue;
    auto bytes = to_bytes(it->second, static_cast<DType>(t.type));
    std::memcpy(prog.persistent(t.name), bytes.data(), std::min<size_t>(bytes.size(), static_cast<size_t>(t.bytes(1))));
  }
  std::vector<std::vector<uint8_t>> in_bytes, out_bytes;
  std::vector<const void*> ins;
  std::vector<void*> outs;
  ins.assign(static_cast<size_t>(e->slot_count), nullptr);  // kernels read inputs by slot
  for (size_t i = 0; i < e->inputs.size(); ++i) {
    const auto& t = e->inputs[i];
    auto it = feeds.find(t.name);
    if (it == feeds.end()) throw std::runtime_error("no value for input '" + t.name + "'");
    in_bytes.push_back(to_bytes(it->second, t.dtype));
    ins[static_cast<size_t>(e->input_slot[i])] = in_bytes.back().data();
  }
  for (auto& t : e->outputs) {
    out_bytes.emplace_back(static_cast<size_t>(numel(t.shape, batch) * static_cast<int64_t>(dtype_size(t.dtype))) + 1);
    outs.push_back(out_bytes.back().data());
  }

  std::map<NodeId, const lower::Buffer*> arena_of;
  std::set<int> arena(e->arena_buffers.begin(), e->arena_buffers.end());
  for (const lower::Buffer& b : p.buffers)  // views of the entry's buffers are refilled in place too
    if (b.node != kNoNode && b.storage == lower::Storage::Arena && arena.count(b.is_view() ? b.view_of : -1))
      arena_of[b.node] = &b;
  for (int id : e->arena_buffers) {
    const lower::Buffer& b = p.buffers[static_cast<size_t>(id)];
    if (b.node != kNoNode) arena_of[b.node] = &b;
  }
  // A value no buffer of any kind holds is computed inside the kernel that reads it.
  std::set<NodeId> held;
  for (const lower::Buffer& b : p.buffers)
    if (b.node != kNoNode) held.insert(b.node);
  auto computed_inline = [&](NodeId id) {
    const Node& m = g.node(id);
    return !held.count(id) && !m.inputs.empty() && !OpRegistry::get().find(m.op)->interface;
  };
  // What a written node is computed from within its kernel, each value once
  // with the most terms summed on any path to it: its inputs, and through
  // each computed inline, that value's inputs, back to stored ones.
  auto within_kernel = [&](NodeId id) {
    std::map<NodeId, double> reached;
    std::function<void(NodeId, double)> walk = [&](NodeId at, double terms) {
      for (NodeId in : g.node(at).inputs) {
        auto it = reached.find(in);
        if (it != reached.end() && it->second >= terms) continue;
        reached[in] = terms;
        if (computed_inline(in)) walk(in, terms * summed_terms(g, in, batch));
      }
    };
    walk(id, summed_terms(g, id, batch));
    return reached;
  };

  // The interpreter's value of every node a kernel of this entry writes
  // (and of what it is computed from, which scales what rounding alone can explain).
  std::set<std::string> wanted;
  std::map<NodeId, std::map<NodeId, double>> computed_from;  // within_kernel of each written node
  for (int ki : e->kernels)
    for (int w : p.kernels[static_cast<size_t>(ki)].writes) {
      const lower::Buffer& b = p.buffers[static_cast<size_t>(w)];
      if (b.node == kNoNode) continue;
      wanted.insert(g.node(b.node).name);
      auto it = computed_from.find(b.node);
      if (it == computed_from.end()) it = computed_from.emplace(b.node, within_kernel(b.node)).first;
      for (const auto& [in, terms] : it->second) wanted.insert(g.node(in).name);
    }
  std::vector<std::string> fetch(wanted.begin(), wanted.end());
  std::map<std::string, interp::Value> interp_feeds;
  for (auto& [name, v] : feeds)
    if (g.find(name) != kNoNode) interp_feeds[name] = v;
  interp::Interpreter interpreter(g, interp::Precision::f32);
  auto reference = interpreter.run(interp_feeds, fetch);

  NumericsReport report;
  kiln_context& ctx = prog.context();
  ctx.batch = batch;
  for (int ki : e->kernels) {
    const lower::Kernel& k = p.kernels[static_cast<size_t>(ki)];
    // The kernel reads the interpreter's values of its node's inputs, so any
    // difference is its own, not an earlier kernel's rounding amplified.
    for (int w : k.writes) {
      const lower::Buffer& b = p.buffers[static_cast<size_t>(w)];
      if (b.node == kNoNode) continue;
      for (NodeId in : g.node(b.node).inputs) {
        auto it = arena_of.find(in);
        if (it == arena_of.end()) continue;
        auto bytes = to_bytes(reference.at(g.node(in).name), it->second->dtype);
        std::memcpy(ctx.arena + it->second->offset, bytes.data(), bytes.size());
      }
    }
    cp.kernel(k.name)(&ctx, ins.data(), outs.data());
    ++report.kernels_run;
    for (int w : k.writes) {
      const lower::Buffer& b = p.buffers[static_cast<size_t>(w)];
      if (b.node == kNoNode || b.storage != lower::Storage::Arena) continue;
      const Node& n = g.node(b.node);
      interp::Value ref = reference.at(n.name);
      interp::Value got = from_bytes(ctx.arena + b.offset, b.dtype, ref.shape);
      // A product nothing reads above its diagonal leaves that part unwritten (GemmSpec::c_lower_read).
      if (k.kind == lower::KernelKind::Gemm && k.gemm.c_lower_read && w == k.gemm.c && ref.shape.size() >= 2) {
        const size_t rows = static_cast<size_t>(ref.shape[ref.shape.size() - 2]), cols = static_cast<size_t>(ref.shape.back());
        for (size_t e = 0; e < ref.data.size(); ++e)
          if (e % cols > e / cols % rows) got.data[e] = ref.data[e] = 0;
      }
      Comparison c = compare(got, ref);
      ++report.nodes_checked;
      // A result that cancels (a sum of terms that nearly cancel) is rounding
      // noise relative to itself: measure it against what it is computed
      // from too. A sum of n terms that cancels carries rounding of n terms
      // (batch norm's gradient sums to ~0 over every pixel of a channel),
      // also when the sum is computed inline and only scaled or negated
      // after it (factor-sums: -(sum(x - mean) * k)).
      double inputs_max = 0, terms = summed_terms(g, b.node, batch);
      for (const auto& [in, t] : computed_from.at(b.node)) {
        const interp::Value& v = reference.at(g.node(in).name);
        if (!is_float(v.dtype)) continue;
        terms = std::max(terms, t);
        for (double x : v.data)
          if (std::isfinite(x)) inputs_max = std::max(inputs_max, std::fabs(x));
      }
      double scale = std::max(c.max_abs_ref, kInputScale * inputs_max * terms);
      bool bad = !c.finite || c.max_abs_diff > tolerance * scale;
      if (!bad) continue;
      report.ok = false;
      report.node = n.name;
      report.origin = n.origin;
      report.op = n.op;
      report.kernel = k.name;
      report.max_abs_diff = c.max_abs_diff;
      report.max_abs_ref = c.max_abs_ref;
      report.worst_index = c.finite ? c.worst : c.first_nonfinite;
      std::ostringstream os;
      os << "JSON node '" << n.origin << "' (graph node '" << n.name << "', op " << n.op << ", kernel " << k.name
         << "): ";
      if (!c.finite)
        os << "element " << c.first_nonfinite << " is " << got.data[static_cast<size_t>(c.first_nonfinite)]
           << " but the interpreter has " << ref.data[static_cast<size_t>(c.first_nonfinite)];
      else
        os << "max |compiled - interpreter| = " << c.max_abs_diff << " at element " << c.worst << " (compiled "
           << got.data[static_cast<size_t>(c.worst)] << ", interpreter " << ref.data[static_cast<size_t>(c.worst)]
           << ") exceeds " << tolerance << " x " << scale << " (max |interpreter| = " << c.max_abs_ref
           << ", max |inputs| = " << inputs_max << ")";
      report.message = os.str();
      return report;
    }
  }
  return report;
}

}  // namespace kiln::codegen
