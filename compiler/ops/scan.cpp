// Reductions built from the primitive ones (reduce_min, reduce_logsumexp,
// reduce_l1, reduce_l2, argmin: composites, so their gradients and fusion
// come from the parts) and cumsum, a scan along one axis.
#include <cmath>

#include "compiler/ir/builder.h"
#include "compiler/interp/ref_ctx.h"
#include "compiler/lower/lower_ctx.h"
#include "compiler/ops/registry.h"
#include "compiler/ops/samples.h"

namespace kiln {

namespace {

std::vector<AttrSpec> axes_attrs() {
  return {{"axes", AttrKind::IntList, false, nlohmann::json::array(), "axes to reduce (negative counts from the end; empty = all)", {}, -64, 63},
          {"keepdims", AttrKind::Bool, false, false, "keep reduced axes as size 1"}};
}

const char* kRule = "x: S -> S without the reduced axes (or with them as 1 when keepdims)";

std::vector<OpSample> samples(Range r = {}) {
  return {{{{{-1, 17}, r.lo, r.hi}}, {{"axes", {-1}}}},
          {{{{-1, 3, 5}, r.lo, r.hi}}, {{"axes", {1, 2}}, {"keepdims", true}}},
          {{{{5, 7}, r.lo, r.hi}}}};
}

int axis_of(const Attrs& a, int rank) { return normalize_axis(a.at("axis").get<int64_t>(), rank); }

}  // namespace

static void add_scan_ops(OpRegistry& r) {
  auto composite = [&](const char* name, const char* summary, ExpandFn expand, std::vector<OpSample> s) {
    r.add({.name = name, .family = "scan", .summary = summary, .inputs = {"x"}, .attrs = axes_attrs(),
           .shape_rule = kRule, .expand = std::move(expand), .pattern = OpPattern::reduction, .samples = std::move(s)});
  };
  composite("reduce_min", "minimum over axes (composite: -reduce_max(-x)); the gradient goes to the first minimal element",
            [](GraphBuilder& b, const std::vector<NodeId>& in, const Attrs& a) {
              return b.add1("neg", b.add("reduce_max", {b.add1("neg", in[0])}, a));
            },
            samples());
  composite("reduce_l1", "sum of |x| over axes", [](GraphBuilder& b, const std::vector<NodeId>& in, const Attrs& a) {
    return b.add("reduce_sum", {b.add1("abs", in[0])}, a);
  }, samples({0.2, 1}));
  composite("reduce_l2", "sqrt of the sum of squares over axes",
            [](GraphBuilder& b, const std::vector<NodeId>& in, const Attrs& a) {
              return b.add1("sqrt", b.add("reduce_sum", {b.add1("square", in[0])}, a));
            },
            samples());
  // log sum exp(x) = m + log sum exp(x - m), m the maximum: no overflow.
  composite("reduce_logsumexp", "log of the sum of exp(x) over axes, stable for large x",
            [](GraphBuilder& b, const std::vector<NodeId>& in, const Attrs& a) {
              Attrs keep = a;
              keep["keepdims"] = true;
              NodeId m = b.add("reduce_max", {in[0]}, keep);
              NodeId s = b.add("reduce_sum", {b.add1("exp", b.add2("sub", in[0], m))}, a);
              NodeId m_out = b.type(m).shape == b.type(s).shape ? m : b.add("reshape", {m}, {{"shape", b.type(s).shape}});
              return b.add2("add", m_out, b.add1("log", s));
            },
            samples({-3, 3}));
  r.add({.name = "argmin", .family = "scan", .summary = "index of the first minimum along an axis (composite: argmax(-x))",
         .inputs = {"x"}, .attrs = {{"axis", AttrKind::Int, false, -1, "the axis (negative counts from the end)", {}, -64, 63}},
         .shape_rule = "x: S -> i32[S without axis]",
         .expand = [](GraphBuilder& b, const std::vector<NodeId>& in, const Attrs& a) {
           return b.add("argmax", {b.add1("neg", in[0])}, a);
         },
         .no_grad = true, .pattern = OpPattern::reduction, .kinks = Kinks::value_steps,
         .samples = {{{{{-1, 17}}}}, {{{{3, 33, 5}}}, {{"axis", 1}}}}});

  r.add({.name = "cumsum", .family = "scan",
         .summary = "running sums along an axis (exclusive: each sum without its own element; reverse: from the end)",
         .inputs = {"x"},
         .attrs = {{"axis", AttrKind::Int, false, -1, "the axis (negative counts from the end)", {}, -64, 63},
                   {"exclusive", AttrKind::Bool, false, false, "leave each element out of its own sum"},
                   {"reverse", AttrKind::Bool, false, false, "sum from the last element back"}},
         .shape_rule = "x: S -> S",
         .infer = [](const InferCtx& c) {
           if (c.in[0].dtype == DType::boolean) throw OpError("cumsum of a bool tensor; cast it first");
           axis_of(c.attrs, c.in[0].rank());
           return c.in[0];
         },
         .pattern = OpPattern::opaque,
         .samples = {{{{{-1, 17}}}},
                     {{{{-1, 33}}}, {{"exclusive", true}}},
                     {{{{-1, 5, 3}}}, {{"axis", 0}, {"reverse", true}}},
                     {{{{4, 7}}}, {{"axis", 1}, {"exclusive", true}, {"reverse", true}}},
                     {{{{-1, 9}, -20, 20, DType::i32}}}}});
}

// cumsum's adjoint is cumsum the other way round.
static void add_scan_gradients(OpRegistry& r) {
  r.find_mut("cumsum")->grad = [](GradCtx& c) -> std::vector<NodeId> {
    Attrs a = c.graph().node(c.node).attrs;
    a["reverse"] = !a.at("reverse").get<bool>();
    return {c.b.add("cumsum", {c.dy}, a)};
  };
}

static void add_scan_reference(OpRegistry& r) {
  r.find_mut("cumsum")->reference = [](interp::RefCtx& c) {
    const interp::Array& x = *c.in[0];
    const size_t ax = static_cast<size_t>(axis_of(c.attrs, static_cast<int>(x.dimension())));
    const bool exclusive = c.attrs.at("exclusive").get<bool>(), reverse = c.attrs.at("reverse").get<bool>();
    size_t outer = 1, inner = 1;
    for (size_t i = 0; i < ax; ++i) outer *= x.shape()[i];
    for (size_t i = ax + 1; i < x.dimension(); ++i) inner *= x.shape()[i];
    const size_t d = x.shape()[ax];
    c.out = x;
    for (size_t o = 0; o < outer; ++o)
      for (size_t in = 0; in < inner; ++in) {
        double acc = 0;
        for (size_t j = 0; j < d; ++j) {
          size_t pos = reverse ? d - 1 - j : j, at = (o * d + pos) * inner + in;
          double v = x.flat(at);
          if (!exclusive) acc += v;
          c.out.flat(at) = acc;
          if (exclusive) acc += v;
        }
      }
  };
}

// One running sum per line along the axis; the lines in parallel.
static void add_scan_lowering(OpRegistry& r) {
  using namespace lower;
  r.find_mut("cumsum")->lower = [](LowerCtx& c) {
    const BufRef& x = c.in[0];
    const int ax = axis_of(c.attrs, x.rank());
    const bool exclusive = c.attrs.at("exclusive").get<bool>(), reverse = c.attrs.at("reverse").get<bool>();
    Shape lines = x.shape;
    lines[static_cast<size_t>(ax)] = 1;
    auto k = c.kernel(std::string(reverse ? "reverse " : "") + (exclusive ? "exclusive " : "") + "cumsum along axis " +
                      std::to_string(ax));
    const bool parallel = numel(x.shape, c.max_batch()) >= kParallelMinElements && ax != 0;
    k.loops(lines, [&](const std::vector<E>& line) {
      E acc = k.let("acc", lit(0, x.scalar()));
      E d = x.dim(ax);
      k.loop("j", 0, d, [&](E j) {
        std::vector<E> idx = line;
        idx[static_cast<size_t>(ax)] = reverse ? d - E(1) - j : j;
        E at = x.offset(idx);
        E v = k.load(x, at);
        if (!exclusive) k.set(acc, acc + v);
        k.store(c.out, at, acc);
        if (exclusive) k.set(acc, acc + v);
      });
    }, parallel);
  };
}

void register_scan_family(OpRegistry& r) {
  add_scan_ops(r);
  add_scan_gradients(r);
  add_scan_reference(r);
  add_scan_lowering(r);
  r.find_mut("cumsum")->mixes_along = mixes_along_attr("axis");
}

}  // namespace kiln
