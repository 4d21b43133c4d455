// The random graph generator: registry samples, remapped and chained.
#include <algorithm>
#include <set>

#include "compiler/ir/builder.h"
#include "compiler/ops/registry.h"
#include "tools/difftest/difftest.h"

namespace kiln::difftest {

namespace {

// Sizes a remapped dimension takes: 1, primes, and sizes around the 8- and
// 16-lane vector widths, where tails begin.
const std::vector<int64_t> kSmallSizes{1, 2, 3, 5, 7, 8, 9, 13, 15, 16, 17, 23, 31, 32, 33};
// Large graphs: one dimension big enough that kernels run on 2 threads
// (lower::kParallelMinElements) and reductions split.
const std::vector<int64_t> kLargeSizes{1031, 2053, 4099};

bool default_range(const SampleInput& in) { return in.lo == -1 && in.hi == 1; }

// How often each pattern is picked: chains of elementwise ops, reductions and
// contractions are where fusion and epilogues happen.
int pattern_weight(OpPattern p) {
  switch (p) {
    case OpPattern::elementwise: return 4;
    case OpPattern::reduction:
    case OpPattern::contraction: return 3;
    case OpPattern::broadcast:
    case OpPattern::data_movement: return 2;
    default: return 1;
  }
}

class Generator {
 public:
  Generator(uint64_t seed, const GenOptions& o) : rng_(seed), opts_(o) {
    c_.seed = seed;
    c_.model.name = "difftest_" + std::to_string(seed);
    c_.large = std::uniform_real_distribution<double>(0, 1)(rng_) < o.large_fraction;
    for (const OpDef& d : OpRegistry::get().all())
      if (!d.interface && !d.samples.empty())
        for (int w = 0; w < pattern_weight(d.pattern); ++w) ops_.push_back(&d);
  }

  Case run() {
    int n = std::uniform_int_distribution<int>(opts_.min_ops, opts_.max_ops)(rng_);
    for (int i = 0; i < n; ++i) {
      const OpDef* first = i == 0 && !opts_.first_op.empty() ? OpRegistry::get().find(opts_.first_op) : nullptr;
      add_one(first ? *first : *ops_[rng_() % ops_.size()]);
    }
    finish();
    return std::move(c_);
  }

 private:
  bool coin(double p) { return std::uniform_real_distribution<double>(0, 1)(rng_) < p; }

  // One op: up to 8 tries, each drawing a sample, inputs from earlier nodes
  // and a dimension remapping; the op's shape rule decides. The last try is
  // the sample as written with fresh inputs, which its registration vouches for.
  void add_one(const OpDef& def) {
    for (int attempt = 0; attempt < 8; ++attempt) {
      bool plain = attempt == 7;
      Graph trial = c_.model;
      auto ranges = c_.ranges;
      if (try_add(def, def.samples[rng_() % def.samples.size()], trial, ranges, plain ? 0.0 : 0.7, !plain)) {
        c_.model = std::move(trial);
        c_.ranges = std::move(ranges);
        c_.ops.push_back(def.name);
        return;
      }
    }
  }

  // Maps sample dimension values consistently: `from` -> `to` everywhere.
  static bool bind(std::map<int64_t, int64_t>& dims, int64_t from, int64_t to) {
    if ((from == kOpenDim) != (to == kOpenDim)) return false;
    auto [it, fresh] = dims.emplace(from, to);
    return fresh || it->second == to;
  }

  bool try_add(const OpDef& def, const OpSample& s, Graph& g, std::map<std::string, ValueRange>& ranges,
               double attach_p, bool remap) {
    std::map<int64_t, int64_t> dims;
    std::vector<NodeId> attached(s.inputs.size(), kNoNode);
    // Earlier float or bool results may feed the op where the ranks agree.
    for (size_t i = 0; i < s.inputs.size(); ++i) {
      const SampleInput& in = s.inputs[i];
      if (!coin(attach_p) || (is_float(in.dtype) == false && in.dtype != DType::boolean)) continue;
      std::vector<NodeId> fits;
      for (NodeId id : pool_)
        if (g.node(id).type.dtype == in.dtype && g.node(id).type.shape.size() == in.shape.size()) fits.push_back(id);
      if (fits.empty()) continue;
      NodeId pick = fits[rng_() % fits.size()];
      auto saved = dims;
      bool ok = true;
      for (size_t d = 0; d < in.shape.size() && ok; ++d) ok = bind(dims, in.shape[d], g.node(pick).type.shape[d]);
      if (ok) attached[i] = pick;
      else dims = saved;
    }
    // Other dimensions: half of them remapped (one to a large size in large graphs).
    bool grew = false;
    for (const SampleInput& in : s.inputs)
      for (int64_t d : in.shape) {
        if (d == kOpenDim || dims.count(d) || !remap || !coin(0.5)) continue;
        int64_t to = kSmallSizes[rng_() % kSmallSizes.size()];
        if (c_.large && !grew && d > 1) to = kLargeSizes[rng_() % kLargeSizes.size()], grew = true;
        dims[d] = to;
      }
    GraphBuilder b(g);
    const std::string name = "n" + std::to_string(c_.ops.size());
    std::vector<NodeId> ins;
    size_t first_new = g.nodes.size();
    try {
      for (size_t i = 0; i < s.inputs.size(); ++i) {
        const SampleInput& in = s.inputs[i];
        if (attached[i] != kNoNode) {
          ins.push_back(is_float(in.dtype) && !default_range(in) ? squash(b, attached[i], in) : attached[i]);
          continue;
        }
        Shape shape = in.shape;
        for (auto& d : shape)
          if (dims.count(d)) d = dims.at(d);
        if (numel_at(shape, 16) > element_limit()) return false;  // a remapped size used twice (a 4099 x 4099 kernel)
        std::string in_name = name + "_x" + std::to_string(i);
        bool open = std::find(shape.begin(), shape.end(), kOpenDim) != shape.end();
        bool state = std::count(def.state_inputs.begin(), def.state_inputs.end(), static_cast<int>(i)) > 0;
        if (is_float(in.dtype) && !open && (state || coin(0.4))) {
          Attrs init = {{"kind", "uniform"}, {"min", in.lo}, {"max", in.hi}};
          ins.push_back(b.param(in_name, {in.dtype, shape}, {{"init", init}, {"trainable", !state}}));
        } else {
          ins.push_back(b.input(in_name, {in.dtype, shape}));
        }
        ranges[in_name] = {in.lo, in.hi, 0};
      }
      NodeId out = b.add(def.name, ins, s.attrs, name);
      // Indices an op reads must lie in its bound: fresh integer inputs get it.
      for (size_t id = first_new; id < g.nodes.size(); ++id) {
        const Node& n = g.nodes[id];
        const OpDef* d = OpRegistry::get().find(n.op);
        if (!d || !d->index_bound) continue;
        for (size_t k = 0; k < n.inputs.size(); ++k) {
          int64_t bound = d->index_bound(g, n, static_cast<int>(k));
          const Node& src = g.node(n.inputs[k]);
          if (bound > 0 && src.op == "input" && ranges.count(src.name)) ranges[src.name].index_bound = bound;
        }
      }
      // Results too large for the interpreter to check quickly are refused.
      if (numel_at(g.node(out).type.shape, 16) > element_limit()) return false;
      pool_.push_back(out);
      return true;
    } catch (const OpError&) {
      return false;
    }
  }

  // Tensors the interpreter checks quickly (at a batch of 16).
  int64_t element_limit() const { return c_.large ? int64_t{1} << 17 : 8192; }

  static int64_t numel_at(const Shape& s, int64_t batch) {
    int64_t n = 1;
    for (int64_t d : s) n *= d == kOpenDim ? batch : d;
    return n;
  }

  // An earlier result fed to an input whose sample keeps to a range (log's
  // positive one, a divisor away from 0): lo + (hi - lo) * sigmoid(x).
  static NodeId squash(GraphBuilder& b, NodeId x, const SampleInput& in) {
    NodeId s = b.add1("sigmoid", x);
    NodeId scaled = b.add2("mul", s, b.constant(in.hi - in.lo, in.dtype));
    return b.add2("add", scaled, b.constant(in.lo, in.dtype));
  }

  // Outputs: up to three results no other node reads (the last one always),
  // and "loss" = the sum over the float ones of mean(y * fixed weights).
  void finish() {
    Graph& g = c_.model;
    GraphBuilder b(g);
    auto users = g.users();
    std::vector<NodeId> leaves;
    for (auto it = pool_.rbegin(); it != pool_.rend() && leaves.size() < 3; ++it)
      if (users[static_cast<size_t>(*it)].empty() || *it == pool_.back()) leaves.push_back(*it);
    NodeId loss = kNoNode;
    for (size_t i = 0; i < leaves.size(); ++i) {
      NodeId y = leaves[i];
      g.outputs.push_back({"y" + std::to_string(i), y});
      TensorType t = g.node(y).type;
      // An empty result (a slice or range of length 0) is compared, but adds nothing to the loss.
      if (!is_float(t.dtype) || numel_at(t.shape, 1) == 0) continue;
      Shape fixed = t.shape;
      for (auto& d : fixed)
        if (d == kOpenDim) d = 1;
      std::uniform_real_distribution<double> weight(0.5, 1.5);
      std::vector<double> w(static_cast<size_t>(numel_at(fixed, 1)));
      for (double& v : w) v = weight(rng_);
      NodeId term = b.add1("reduce_mean", b.add2("mul", y, b.constant_tensor(w, fixed, t.dtype)));
      if (t.dtype != DType::f32) term = b.add1("cast", term, {{"dtype", "f32"}});
      loss = loss == kNoNode ? term : b.add2("add", loss, term);
    }
    if (loss == kNoNode) loss = b.constant(0.0);
    g.outputs.push_back({"loss", loss});
  }

  std::mt19937_64 rng_;
  GenOptions opts_;
  Case c_;
  std::vector<const OpDef*> ops_;
  std::vector<NodeId> pool_;
};

}  // namespace

std::vector<std::string> generatable_ops() {
  std::vector<std::string> out;
  for (const OpDef& d : OpRegistry::get().all())
    if (!d.interface && !d.samples.empty()) out.push_back(d.name);
  return out;
}

Case generate(uint64_t seed, const GenOptions& options) { return Generator(seed, options).run(); }

std::string planted_name(Planted p) {
  switch (p) {
    case Planted::nan: return "nan";
    case Planted::inf: return "inf";
    case Planted::denormal: return "denormal";
    case Planted::zero: return "signed-zero";
    default: return "none";
  }
}

static double planted_value(Planted p, size_t i) {
  double sign = i % 2 ? 1.0 : -1.0;
  switch (p) {
    case Planted::nan: return NAN;
    case Planted::inf: return sign * INFINITY;
    case Planted::denormal: return sign * 1e-40;
    default: return sign * 0.0;
  }
}

std::map<std::string, interp::Value> draw_values(const Case& c, int64_t batch, uint64_t seed, Planted planted) {
  std::mt19937_64 rng(seed);
  std::map<std::string, interp::Value> out;
  size_t index = 0;
  for (const Node& n : c.model.nodes) {
    if (n.op != "input" && n.op != "param") continue;
    ValueRange r = c.ranges.count(n.name) ? c.ranges.at(n.name) : ValueRange{};
    Shape shape = n.type.shape;
    for (auto& d : shape)
      if (d == kOpenDim) d = batch;
    int64_t count = 1;
    for (int64_t d : shape) count *= d;
    interp::Value v{n.type.dtype, shape, std::vector<double>(static_cast<size_t>(count))};
    std::uniform_real_distribution<double> real(r.lo, r.hi);
    for (size_t i = 0; i < v.data.size(); ++i) {
      double x = real(rng);
      if (r.index_bound > 0) x = static_cast<double>(rng() % static_cast<uint64_t>(r.index_bound));
      else if (n.type.dtype == DType::boolean) x = x > (r.lo + r.hi) / 2;
      else if (n.type.dtype == DType::f32) x = static_cast<double>(static_cast<float>(x));
      else if (!is_float(n.type.dtype)) x = std::floor(x);
      v.data[i] = x;
    }
    if (planted != Planted::none && is_float(n.type.dtype))
      for (size_t i = index % 5; i < v.data.size(); i += 5)
        v.data[i] = planted_value(planted, i);
    out[n.name] = std::move(v);
    ++index;
  }
  return out;
}

}  // namespace kiln::difftest
