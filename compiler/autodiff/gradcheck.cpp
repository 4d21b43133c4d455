#include "compiler/autodiff/gradcheck.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <set>
#include <sstream>
#include <stdexcept>

#include "compiler/autodiff/autodiff.h"
#include "compiler/interp/interpreter.h"
#include "compiler/ir/builder.h"
#include "compiler/ops/registry.h"
#include "compiler/passes/modes.h"

namespace kiln {

using interp::Value;
using Feeds = std::map<std::string, Value>;

namespace {

double rel_error(double a, double b, double floor) {
  double scale = std::max({std::abs(a), std::abs(b), floor});
  return scale == 0 ? 0 : std::abs(a - b) / scale;
}

double max_abs(const Value& v) {
  double m = 0;
  for (double x : v.data) m = std::max(m, std::abs(x));
  return m;
}

double max_rel_error(const Value& a, const Value& b, double floor) {
  double worst = 0;
  for (size_t i = 0; i < a.data.size(); ++i) worst = std::max(worst, rel_error(a.data[i], b.data[i], floor));
  return worst;
}

// Integer inputs that index something (one_hot's labels, a loss's classes)
// are drawn in [0, bound), the tightest bound any of their readers declares.
int64_t index_range(const Graph& g, NodeId input) {
  int64_t bound = 0;
  for (const Node& n : g.nodes) {
    const auto& declared = OpRegistry::get().find(n.op)->index_bound;
    if (!declared) continue;
    for (size_t k = 0; k < n.inputs.size(); ++k)
      if (n.inputs[k] == input)
        if (int64_t b = declared(g, n, static_cast<int>(k)); b > 0) bound = bound ? std::min(bound, b) : b;
  }
  return bound ? bound : 2;
}

Feeds draw_inputs(const Graph& g, std::mt19937_64& rng, const GradcheckOptions& opt) {
  Feeds feeds;
  const int64_t batch = opt.batch;
  std::normal_distribution<double> normal(0.0, 1.0);
  for (NodeId id : g.inputs()) {
    const Node& n = g.node(id);
    Shape s = n.type.shape;
    for (auto& d : s) d = d == kOpenDim ? batch : d;
    Value v{n.type.dtype, s, std::vector<double>(static_cast<size_t>(numel(s)))};
    auto range = opt.input_ranges.find(n.name);
    if (range != opt.input_ranges.end() && n.type.dtype != DType::boolean) {
      std::uniform_real_distribution<double> uniform(range->second.first, range->second.second);
      for (double& x : v.data) x = is_float(n.type.dtype) ? uniform(rng) : std::floor(uniform(rng));
    } else if (is_float(n.type.dtype)) {
      for (double& x : v.data) x = normal(rng);
    } else {
      std::uniform_int_distribution<int64_t> pick(0, index_range(g, id) - 1);
      for (double& x : v.data) x = static_cast<double>(pick(rng));
    }
    feeds[n.name] = std::move(v);
  }
  return feeds;
}

// The model plus, for each op with kinks, what must not change between
// theta - h and theta + h ("kink:<i>"): the masks its gradient rule routes a
// unit cotangent through (slope kinks) or its value (jumps); and for each op
// that declares one, the smallest distance to a kink ("margin:<i>").
struct Probe {
  Graph graph;
  std::vector<std::string> kinks, margins;
};

Probe build_probe(const Graph& model) {
  Probe p{model, {}, {}};
  Graph& g = p.graph;
  GraphBuilder b(g);
  b.set_scope("gradcheck");
  size_t n = g.nodes.size();
  auto watch = [&](NodeId id) {
    p.kinks.push_back("kink:" + std::to_string(p.kinks.size()));
    g.outputs.push_back({p.kinks.back(), id});
  };
  for (size_t i = 0; i < n; ++i) {
    const Node node = g.nodes[i];
    const OpDef& def = *OpRegistry::get().find(node.op);
    if (def.kinks == Kinks::none) continue;
    if (def.kinks == Kinks::value_steps) watch(static_cast<NodeId>(i));
    if (def.kinks == Kinks::gradient_steps && def.grad && is_float(node.type.dtype)) {
      NodeId ones = b.constant(1.0, node.type.dtype);
      if (!node.type.shape.empty()) ones = b.add("broadcast", {ones}, {{"shape", node.type.shape}});
      GradCtx ctx{b, static_cast<NodeId>(i), node.inputs, static_cast<NodeId>(i), ones};
      for (NodeId m : def.grad(ctx))
        if (m != kNoNode) watch(m);
    }
    // Integer operands (an i64 mod) never move under a perturbation: no margin to keep.
    if (def.kink_distance && !node.inputs.empty() && is_float(g.node(node.inputs[0]).type.dtype)) {
      NodeId d = def.kink_distance(b, node);
      NodeId min_d = b.add1("neg", b.add1("reduce_max", b.add1("neg", d)));
      p.margins.push_back("margin:" + std::to_string(p.margins.size()));
      g.outputs.push_back({p.margins.back(), min_d});
    }
  }
  return p;
}

// The probe as finite differences evaluate it: every op whose gradient stops
// by definition (OpDef::no_grad with a float value: stop_gradient; sign,
// floor and round, whose true gradient is 0 anyway) becomes an input held at
// its unperturbed value, as autodiff treats it. Without this a param read
// through stop_gradient has a finite difference of 1 and an autodiff
// gradient of 0 (kiln difftest seed 7004). `held`: the nodes held, by name.
struct HeldProbe {
  Graph graph;
  std::vector<std::string> held;
};

HeldProbe hold_no_grad_values(const Graph& probe) {
  HeldProbe h{probe, {}};
  for (Node& n : h.graph.nodes) {
    const OpDef* def = OpRegistry::get().find(n.op);
    if (!def || !def->no_grad || def->interface || !is_float(n.type.dtype)) continue;
    h.held.push_back(n.name);
    n.op = "input";  // fed by name; its readers keep their ids (the order stays topological)
    n.inputs.clear();
    n.attrs = Attrs::object();
  }
  return h;
}

// A sum's operands: an op that is commutative and associative with identity 0.
bool is_sum(const Node& n) {
  const OpAlgebra& a = OpRegistry::get().find(n.op)->algebra;
  return a.commutative && a.associative && a.right_identity == 0.0 && n.inputs.size() == 2;
}

std::vector<NodeId> add_terms(const Graph& g, NodeId id, bool same_type_only) {
  const Node& n = g.node(id);
  if (is_sum(n) && g.node(n.inputs[0]).type == n.type && g.node(n.inputs[1]).type == n.type) {
    auto l = add_terms(g, n.inputs[0], same_type_only), r = add_terms(g, n.inputs[1], same_type_only);
    l.insert(l.end(), r.begin(), r.end());
    return l;
  }
  return {id};
}

// The hand-written backward nodes a gradient reads (in graph order): nodes it
// depends on that the loss does not, excluding sources.
std::vector<NodeId> hand_intermediates(const Graph& g, NodeId loss, NodeId grad) {
  std::vector<bool> feeds_loss(g.nodes.size(), false), seen(g.nodes.size(), false);
  feeds_loss[static_cast<size_t>(loss)] = true;
  for (size_t i = static_cast<size_t>(loss) + 1; i-- > 0;)
    if (feeds_loss[i])
      for (NodeId in : g.nodes[i].inputs) feeds_loss[static_cast<size_t>(in)] = true;
  std::vector<NodeId> stack{grad}, out;
  while (!stack.empty()) {
    NodeId id = stack.back();
    stack.pop_back();
    const Node& n = g.node(id);
    if (seen[static_cast<size_t>(id)] || feeds_loss[static_cast<size_t>(id)] || n.inputs.empty()) continue;
    seen[static_cast<size_t>(id)] = true;
    out.push_back(id);
    for (NodeId in : n.inputs) stack.push_back(in);
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::string fmt(double v) {
  std::ostringstream os;
  os.precision(3);
  os << v;
  return os.str();
}

}  // namespace

bool GradcheckReport::passed() const {
  for (const ParamCheck& p : params)
    if (p.autodiff_vs_fd > tolerance || (p.handwritten && (p.handwritten_vs_autodiff > tolerance ||
                                                           p.handwritten_vs_fd > tolerance)))
      return false;
  return true;
}

std::string GradcheckReport::text() const {
  std::ostringstream os;
  char line[256];
  os << "loss " << loss << " (f64), " << draws << " draw(s) of the inputs, kink margin "
     << (std::isinf(kink_margin) ? std::string("none") : fmt(kink_margin)) << ", tolerance " << tolerance << "\n";
  std::snprintf(line, sizeof line, "%-28s %10s %8s %7s %15s %15s %15s\n", "param", "elements", "checked", "kinks",
                "autodiff~fd", "hand~autodiff", "hand~fd");
  os << line;
  for (const ParamCheck& p : params) {
    std::snprintf(line, sizeof line, "%-28s %10lld %8d %7d %15.3g %15s %15s  %s\n", p.param.c_str(),
                  static_cast<long long>(p.elements), p.coordinates, p.skipped_kinks, p.autodiff_vs_fd,
                  p.handwritten ? fmt(p.handwritten_vs_autodiff).c_str() : "-",
                  p.handwritten ? fmt(p.handwritten_vs_fd).c_str() : "-",
                  (p.autodiff_vs_fd > tolerance || (p.handwritten && (p.handwritten_vs_autodiff > tolerance ||
                                                                      p.handwritten_vs_fd > tolerance)))
                      ? "FAIL" : "ok");
    os << line;
  }
  for (const ParamCheck& p : params)
    if (!p.divergence.empty()) os << p.divergence << "\n";
  os << (passed() ? "PASS" : "FAIL") << "\n";
  return os.str();
}

GradcheckReport gradcheck(const Graph& as_written, const GradcheckOptions& opt) {
  // The training form is what gets differentiated (batch statistics, dropout
  // masks of step 0); the running statistics it would update do not matter here.
  Graph model = as_written;
  if (specialize_mode(model, {Mode::train, kNoNode, graph_seed(model)})) model.updates.clear();
  NodeId loss = model.output("loss");
  if (loss == kNoNode) throw std::invalid_argument("graph '" + model.name + "' has no \"loss\" output to check");
  GradcheckReport report;
  report.tolerance = opt.tolerance;
  std::mt19937_64 rng(opt.seed);

  // Analysis graph: autodiff gradients, hand-written gradients, and for the
  // divergence report the gradient of each loss term and each hand-written term.
  Graph a = model;
  std::vector<NodeId> params = trainable_params(a);
  if (opt.check_inputs)
    for (NodeId id : a.inputs())
      if (is_float(a.node(id).type.dtype)) params.push_back(id);
  if (params.empty())
    throw std::invalid_argument("graph '" + model.name + "' has no trainable params" +
                                (opt.check_inputs ? " or float inputs" : ""));
  std::map<NodeId, NodeId> hand = a.gradients;
  a.gradients.clear();
  Gradients ad = differentiate(a, loss, params);
  for (NodeId p : params) a.outputs.push_back({"ad:" + a.node(p).name, ad.of.at(p)});
  std::vector<NodeId> loss_terms = add_terms(a, loss, true), hand_params;
  for (auto& [p, gnode] : hand)
    if (std::find(params.begin(), params.end(), p) != params.end()) hand_params.push_back(p);
  for (NodeId p : hand_params) {
    a.outputs.push_back({"hand:" + a.node(p).name, hand.at(p)});
    auto terms = add_terms(a, hand.at(p), true);
    for (size_t j = 0; j < terms.size(); ++j)
      a.outputs.push_back({"handterm" + std::to_string(j) + ":" + a.node(p).name, terms[j]});
  }
  if (loss_terms.size() > 1 && !hand_params.empty())
    for (size_t k = 0; k < loss_terms.size(); ++k) {
      Gradients term = differentiate(a, loss_terms[k], hand_params);
      for (NodeId p : hand_params) a.outputs.push_back({"term" + std::to_string(k) + ":" + a.node(p).name, term.of.at(p)});
    }

  // Each hand-written intermediate is compared with the autodiff cotangents of
  // the forward nodes of its type (dy with d loss/d y, ...).
  std::map<NodeId, std::vector<NodeId>> counterparts;
  std::set<NodeId> fetched;
  for (NodeId p : hand_params)
    for (NodeId h : hand_intermediates(a, loss, hand.at(p))) {
      if (counterparts.count(h)) continue;
      auto& candidates = counterparts[h];
      for (auto& [f, cot] : ad.cotangents)
        if (a.node(f).type == a.node(h).type) {
          candidates.push_back(f);
          if (fetched.insert(f).second) a.outputs.push_back({"cot:" + a.node(f).name, cot});
        }
      // Nearest the loss first, nodes the user named (not a composite's insides) before the rest.
      std::reverse(candidates.begin(), candidates.end());
      std::stable_partition(candidates.begin(), candidates.end(), [&](NodeId f) { return a.node(f).origin == a.node(f).name; });
      if (!candidates.empty()) a.outputs.push_back({"mid:" + a.node(h).name, h});
    }

  // Draw inputs, keeping the draw farthest from every maximum's kink.
  Probe probe = build_probe(model);
  interp::Interpreter probe_run(probe.graph, interp::Precision::f64);
  Feeds values = interp::init_params(model);
  Feeds best;
  report.kink_margin = -1;
  for (int draw = 0; draw < std::max(1, opt.max_redraws); ++draw) {
    Feeds feeds = draw_inputs(model, rng, opt);
    for (auto& [k, v] : values) feeds[k] = v;
    double margin = std::numeric_limits<double>::infinity();
    if (!probe.margins.empty())
      for (auto& [k, v] : probe_run.run(feeds, probe.margins)) margin = std::min(margin, v.data.at(0));
    report.draws = draw + 1;
    if (margin > report.kink_margin) report.kink_margin = margin, best = feeds;
    if (margin >= 1e-3) break;
  }
  Feeds& feeds = best;

  interp::Interpreter analysis(a, interp::Precision::f64);
  auto at = analysis.run(feeds);
  report.loss = at.at("loss").data.at(0);
  const double floor = opt.fd_floor * std::max(1.0, std::abs(report.loss));

  // Finite differences run the probe with the no-grad values held.
  HeldProbe held = hold_no_grad_values(probe.graph);
  if (!held.held.empty()) {
    Graph sources = probe.graph;
    std::vector<std::string> names;
    for (const std::string& name : held.held) {
      sources.outputs.push_back({"held:" + name, sources.find(name)});
      names.push_back("held:" + name);
    }
    auto values = interp::Interpreter(sources, interp::Precision::f64).run(feeds, names);
    for (const std::string& name : held.held) feeds[name] = values.at("held:" + name);
  }
  interp::Interpreter fd_run(held.graph, interp::Precision::f64);
  std::vector<std::string> fetch = probe.kinks;
  fetch.push_back("loss");
  auto base = fd_run.run(feeds, fetch);
  // Loss at params + delta, or NaN when a kink lies between.
  // The param is perturbed in place and restored (copying a 3M-element param per evaluation would dominate).
  auto loss_at = [&](const std::string& param, const std::vector<std::pair<int64_t, double>>& delta) {
    std::vector<double>& data = feeds.at(param).data;
    std::vector<double> saved;
    saved.reserve(delta.size());
    for (auto& [i, d] : delta) saved.push_back(data[static_cast<size_t>(i)]), data[static_cast<size_t>(i)] += d;
    auto r = fd_run.run(feeds, fetch);
    for (size_t k = 0; k < delta.size(); ++k) data[static_cast<size_t>(delta[k].first)] = saved[k];
    for (auto& k : probe.kinks)
      if (r.at(k).data != base.at(k).data) return std::numeric_limits<double>::quiet_NaN();
    return r.at("loss").data.at(0);
  };

  for (NodeId p : params) {
    const std::string name = model.node(p).name;
    const Value& theta = feeds.at(name);
    const Value& g_ad = at.at("ad:" + name);
    ParamCheck c;
    c.param = name;
    c.elements = theta.size();
    c.handwritten = hand.count(p) > 0;
    const Value* g_hand = c.handwritten ? &at.at("hand:" + name) : nullptr;
    std::vector<int64_t> coords;
    bool sampled = c.elements > opt.full_check_limit;
    std::uniform_int_distribution<int64_t> pick(0, c.elements - 1);
    int64_t wanted = sampled ? opt.samples : c.elements, tried = 0, next = 0;
    while (static_cast<int64_t>(coords.size()) < wanted && tried < 3 * wanted + 10) {
      int64_t i = sampled ? pick(rng) : next++;
      ++tried;
      if (!sampled && i >= c.elements) break;
      double h = opt.step * std::max(1.0, std::abs(theta.data[static_cast<size_t>(i)]));
      double fd = (loss_at(name, {{i, h}}) - loss_at(name, {{i, -h}})) / (2 * h);
      if (std::isnan(fd)) { ++c.skipped_kinks; continue; }
      coords.push_back(i);
      c.autodiff_vs_fd = std::max(c.autodiff_vs_fd, rel_error(g_ad.data[static_cast<size_t>(i)], fd, floor));
      if (g_hand) c.handwritten_vs_fd = std::max(c.handwritten_vs_fd, rel_error(g_hand->data[static_cast<size_t>(i)], fd, floor));
    }
    c.coordinates = static_cast<int>(coords.size());
    if (sampled) {
      // One random unit direction: the directional derivative checks every coordinate at once.
      std::normal_distribution<double> normal(0.0, 1.0);
      for (int attempt = 0; attempt < 5; ++attempt) {
        std::vector<double> dir(static_cast<size_t>(c.elements));
        double norm = 0;
        for (double& d : dir) d = normal(rng), norm += d * d;
        norm = std::sqrt(norm);
        std::vector<std::pair<int64_t, double>> plus, minus;
        double dd_ad = 0, dd_hand = 0;
        for (size_t i = 0; i < dir.size(); ++i) {
          dir[i] /= norm;
          plus.push_back({static_cast<int64_t>(i), opt.step * dir[i]});
          minus.push_back({static_cast<int64_t>(i), -opt.step * dir[i]});
          dd_ad += g_ad.data[i] * dir[i];
          if (g_hand) dd_hand += g_hand->data[i] * dir[i];
        }
        double fd = (loss_at(name, plus) - loss_at(name, minus)) / (2 * opt.step);
        if (std::isnan(fd)) { ++c.skipped_kinks; continue; }
        c.autodiff_vs_fd = std::max(c.autodiff_vs_fd, rel_error(dd_ad, fd, floor));
        if (g_hand) c.handwritten_vs_fd = std::max(c.handwritten_vs_fd, rel_error(dd_hand, fd, floor));
        break;
      }
    }
    if (g_hand) {
      c.handwritten_vs_autodiff = max_rel_error(*g_hand, g_ad, 1e-9 * max_abs(g_ad));
      if (c.handwritten_vs_autodiff > opt.tolerance) {
        // Name the term of the hand-written gradient that departs, and the loss term it should match.
        std::ostringstream why;
        why << "hand-written gradient of '" << name << "' (node %" << model.node(hand.at(p)).name
            << ") differs from autodiff: max rel err " << fmt(c.handwritten_vs_autodiff);
        auto terms = add_terms(a, hand.at(p), true);
        for (size_t j = 0; j < terms.size() && loss_terms.size() > 1; ++j) {
          const Value& hj = at.at("handterm" + std::to_string(j) + ":" + name);
          std::string verdict = "matches no loss term's gradient";
          for (size_t k = 0; k < loss_terms.size(); ++k) {
            const Value& ak = at.at("term" + std::to_string(k) + ":" + name);
            double floor_k = 1e-9 * std::max(max_abs(ak), max_abs(hj));
            const std::string term_name = "%" + a.node(loss_terms[k]).name;
            if (max_rel_error(hj, ak, floor_k) <= opt.tolerance) { verdict = "agrees with d " + term_name + "/d " + name; break; }
            double dot = 0, aa = 0;
            for (size_t i = 0; i < ak.data.size(); ++i) dot += hj.data[i] * ak.data[i], aa += ak.data[i] * ak.data[i];
            if (aa == 0) continue;
            Value scaled = ak;
            for (double& x : scaled.data) x *= dot / aa;
            if (max_rel_error(hj, scaled, floor_k) <= opt.tolerance) {
              verdict = "DIVERGES: it is " + fmt(dot / aa) + " x d " + term_name + "/d " + name + " (loss term node " +
                        term_name + ", op " + a.node(loss_terms[k]).op + ")";
              break;
            }
          }
          why << "\n  term %" << a.node(terms[j]).name << " (" << a.node(terms[j]).op << "): " << verdict;
        }
        // The hand-written intermediates that agree with autodiff's cotangents
        // narrow down where the divergence can be.
        std::string agree;
        // Scalars are skipped: they agree by coincidence too easily.
        for (NodeId h : hand_intermediates(a, loss, hand.at(p)))
          for (NodeId f : a.node(h).type.rank() > 0 ? counterparts[h] : std::vector<NodeId>{}) {
            const Value &hv = at.at("mid:" + a.node(h).name), &fv = at.at("cot:" + a.node(f).name);
            if (max_rel_error(hv, fv, 1e-9 * max_abs(fv)) > opt.tolerance) continue;
            agree += (agree.empty() ? "" : ", ") + ("%" + a.node(h).name + " = d loss/d %" + a.node(f).name);
            break;
          }
        if (!agree.empty()) why << "\n  hand-written intermediates that agree with autodiff: " << agree;
        c.divergence = why.str();
      }
    }
    report.params.push_back(std::move(c));
  }
  if (std::isinf(report.kink_margin) || report.kink_margin < 0) report.kink_margin = std::numeric_limits<double>::infinity();
  return report;
}

}  // namespace kiln
