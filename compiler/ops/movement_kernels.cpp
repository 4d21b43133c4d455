// The data-movement family's gradients, reference kernels and lowerings
// (its ops and shape rules: movement.cpp). Every lowering is one loop over
// the elements written, reading from a computed index; scatter_add alone
// accumulates, in index order, so repeated indices add up deterministically.
#include <algorithm>

#include "compiler/ir/builder.h"
#include "compiler/interp/ref_ctx.h"
#include "compiler/lower/lower_ctx.h"
#include "compiler/ops/movement.h"

namespace kiln {

namespace {

using interp::Array;
using interp::RefCtx;
using lower::BufRef;
using lower::E;
using lower::LowerCtx;

// Every multi-index of `shape`, row-major.
template <class F>
void for_each_index(const std::vector<size_t>& shape, F f) {
  size_t n = 1;
  for (size_t d : shape) n *= d;
  std::vector<size_t> idx(shape.size(), 0);
  for (size_t flat = 0; flat < n; ++flat) {
    f(idx);
    for (size_t i = shape.size(); i-- > 0;) {
      if (++idx[i] < shape[i]) break;
      idx[i] = 0;
    }
  }
}

size_t flat_of(const std::vector<size_t>& idx, const std::vector<size_t>& shape) {
  size_t off = 0;
  for (size_t i = 0; i < shape.size(); ++i) off = off * shape[i] + idx[i];
  return off;
}

std::vector<size_t> shape_of(const Array& a) { return {a.shape().begin(), a.shape().end()}; }

Shape concrete_shape(const Array& a) {
  Shape s;
  for (size_t d : a.shape()) s.push_back(static_cast<int64_t>(d));
  return s;
}

int axis_of(const Attrs& a, size_t rank) { return normalize_axis(a.at("axis").get<int64_t>(), static_cast<int>(rank)); }

bool parallel_for(const LowerCtx& c, const Shape& s) { return numel(s, c.max_batch()) >= lower::kParallelMinElements; }

// gather's index for output position `out` (the indices' part of it), wrapped
// and checked: where it falls outside [0, d) the element reads as zero.
struct Picked {
  E index, valid;
};
Picked pick(lower::KernelBuilder& k, const BufRef& indices, const std::vector<E>& out, int axis, int64_t d) {
  std::vector<E> at(out.begin() + axis, out.begin() + axis + indices.rank());
  E raw = cast(k.load(indices, indices.offset(at)), lower::Scalar::i64);
  E wrapped = lower::select(raw < E(0), raw + E(d), raw);
  E valid = (wrapped >= E(0)) && (wrapped < E(d));
  return {lower::select(valid, wrapped, E(0)), valid};
}

}  // namespace

// ---- gradients ----
void add_movement_gradients(OpRegistry& r) {
  r.find_mut("concat")->grad = [](GradCtx& c) -> std::vector<NodeId> {
    const Attrs a = c.graph().node(c.node).attrs;
    const int ax = axis_of(a, c.type(c.y).shape.size());
    std::vector<NodeId> out;
    int64_t offset = 0;
    for (NodeId x : c.x) {
      int64_t d = c.type(x).shape[static_cast<size_t>(ax)];
      out.push_back(c.b.add("slice", {c.dy}, {{"starts", {offset}}, {"ends", {offset + d}}, {"axes", {ax}}}));
      offset += d;
    }
    return out;
  };
  r.find_mut("slice")->grad = [](GradCtx& c) -> std::vector<NodeId> {
    Attrs a = c.graph().node(c.node).attrs;
    a["shape"] = c.type(c.x[0]).shape;
    return {c.b.add("slice_grad", {c.dy}, a)};
  };
  r.find_mut("slice_grad")->grad = [](GradCtx& c) -> std::vector<NodeId> {
    Attrs a = c.graph().node(c.node).attrs;
    a.erase("shape");
    return {c.b.add("slice", {c.dy}, a)};
  };
  r.find_mut("pad")->grad = [](GradCtx& c) -> std::vector<NodeId> {
    Attrs a = c.graph().node(c.node).attrs;
    a["shape"] = c.type(c.x[0]).shape;
    return {c.b.add("pad_grad", {c.dy}, a)};
  };
  r.find_mut("gather")->grad = [](GradCtx& c) -> std::vector<NodeId> {
    const Attrs a = c.graph().node(c.node).attrs;
    const TensorType data = c.type(c.x[0]);
    NodeId zeros = c.b.add("broadcast", {c.b.scalar_like(0.0, c.dy)}, {{"shape", data.shape}});
    return {c.b.add("scatter_add", {zeros, c.x[1], c.dy}, {{"axis", a.at("axis")}}), kNoNode};
  };
  r.find_mut("scatter_add")->grad = [](GradCtx& c) -> std::vector<NodeId> {
    const Attrs a = c.graph().node(c.node).attrs;
    return {c.dy, kNoNode, c.b.add("gather", {c.dy, c.x[1]}, {{"axis", a.at("axis")}})};
  };
  // Each repeated axis split into (repeat, size) and summed over the repeats.
  r.find_mut("tile")->grad = [](GradCtx& c) -> std::vector<NodeId> {
    const auto reps = c.graph().node(c.node).attrs.at("repeats").get<std::vector<int64_t>>();
    const Shape xs = c.type(c.x[0]).shape;
    Shape split;
    std::vector<int64_t> summed;
    for (size_t i = 0; i < xs.size(); ++i) {
      if (reps[i] > 1) summed.push_back(static_cast<int64_t>(split.size())), split.push_back(reps[i]);
      split.push_back(xs[i]);
    }
    NodeId g = c.b.add("reshape", {c.dy}, {{"shape", split}});
    g = c.b.add("reduce_sum", {g}, {{"axes", summed}});
    return {c.b.add("reshape", {g}, {{"shape", xs}})};
  };
  r.find_mut("flip")->grad = [](GradCtx& c) -> std::vector<NodeId> {
    return {c.b.add("flip", {c.dy}, c.graph().node(c.node).attrs)};
  };
}

// ---- reference kernels ----
void add_movement_reference(OpRegistry& r) {
  r.find_mut("concat")->reference = [](RefCtx& c) {
    const int ax = axis_of(c.attrs, c.in[0]->dimension());
    std::vector<size_t> shape = shape_of(*c.in[0]);
    shape[static_cast<size_t>(ax)] = 0;
    for (const Array* x : c.in) shape[static_cast<size_t>(ax)] += x->shape()[static_cast<size_t>(ax)];
    c.out = Array::from_shape(shape);
    size_t offset = 0;
    for (const Array* x : c.in) {
      for_each_index(shape_of(*x), [&](const std::vector<size_t>& idx) {
        std::vector<size_t> o = idx;
        o[static_cast<size_t>(ax)] += offset;
        c.out.flat(flat_of(o, shape)) = x->flat(flat_of(idx, shape_of(*x)));
      });
      offset += x->shape()[static_cast<size_t>(ax)];
    }
  };
  r.find_mut("slice")->reference = [](RefCtx& c) {
    auto axes = resolve_slice(c.attrs, concrete_shape(*c.in[0]));
    std::vector<size_t> shape;
    for (auto& a : axes) shape.push_back(static_cast<size_t>(a.count));
    c.out = Array::from_shape(shape);
    for_each_index(shape, [&](const std::vector<size_t>& o) {
      std::vector<size_t> src(o.size());
      for (size_t i = 0; i < o.size(); ++i) src[i] = static_cast<size_t>(axes[i].start + static_cast<int64_t>(o[i]) * axes[i].step);
      c.out.flat(flat_of(o, shape)) = c.in[0]->flat(flat_of(src, shape_of(*c.in[0])));
    });
  };
  r.find_mut("slice_grad")->reference = [](RefCtx& c) {
    std::vector<size_t> shape = c.concrete(c.attrs.at("shape").get<Shape>());
    Shape s(shape.begin(), shape.end());
    auto axes = resolve_slice(c.attrs, s);
    c.out = Array::from_shape(shape);
    c.out.fill(0.0);
    for_each_index(shape_of(*c.in[0]), [&](const std::vector<size_t>& o) {
      std::vector<size_t> at(o.size());
      for (size_t i = 0; i < o.size(); ++i) at[i] = static_cast<size_t>(axes[i].start + static_cast<int64_t>(o[i]) * axes[i].step);
      c.out.flat(flat_of(at, shape)) = c.in[0]->flat(flat_of(o, shape_of(*c.in[0])));
    });
  };
  r.find_mut("pad")->reference = [](RefCtx& c) {
    const Shape in = concrete_shape(*c.in[0]);
    PadSpec p = pad_spec(c.attrs, in);
    std::vector<size_t> shape;
    for (size_t i = 0; i < in.size(); ++i) shape.push_back(static_cast<size_t>(in[i] + p.before[i] + p.after[i]));
    c.out = Array::from_shape(shape);
    for_each_index(shape, [&](const std::vector<size_t>& o) {
      std::vector<size_t> src(o.size());
      bool all_inside = true;
      for (size_t i = 0; i < o.size(); ++i) {
        bool inside;
        src[i] = static_cast<size_t>(pad_source(static_cast<int64_t>(o[i]), p.before[i], in[i], p.mode, inside));
        all_inside = all_inside && inside;
      }
      c.out.flat(flat_of(o, shape)) =
          p.mode == "constant" && !all_inside ? p.value : c.in[0]->flat(flat_of(src, shape_of(*c.in[0])));
    });
  };
  r.find_mut("gather")->reference = [](RefCtx& c) {
    const Array &data = *c.in[0], &indices = *c.in[1];
    const size_t ax = static_cast<size_t>(axis_of(c.attrs, data.dimension())), ni = indices.dimension();
    const int64_t d = static_cast<int64_t>(data.shape()[ax]);
    std::vector<size_t> shape(data.shape().begin(), data.shape().begin() + static_cast<long>(ax));
    shape.insert(shape.end(), indices.shape().begin(), indices.shape().end());
    shape.insert(shape.end(), data.shape().begin() + static_cast<long>(ax) + 1, data.shape().end());
    c.out = Array::from_shape(shape);
    for_each_index(shape, [&](const std::vector<size_t>& o) {
      std::vector<size_t> at(o.begin() + static_cast<long>(ax), o.begin() + static_cast<long>(ax + ni));
      int64_t i = static_cast<int64_t>(indices.flat(flat_of(at, shape_of(indices))));
      if (i < 0) i += d;
      double v = 0;
      if (i >= 0 && i < d) {
        std::vector<size_t> src(o.begin(), o.begin() + static_cast<long>(ax));
        src.push_back(static_cast<size_t>(i));
        src.insert(src.end(), o.begin() + static_cast<long>(ax + ni), o.end());
        v = data.flat(flat_of(src, shape_of(data)));
      }
      c.out.flat(flat_of(o, shape)) = v;
    });
  };
  r.find_mut("scatter_add")->reference = [](RefCtx& c) {
    const Array &data = *c.in[0], &indices = *c.in[1], &updates = *c.in[2];
    const size_t ax = static_cast<size_t>(axis_of(c.attrs, data.dimension())), ni = indices.dimension();
    const int64_t d = static_cast<int64_t>(data.shape()[ax]);
    c.out = data;
    for_each_index(shape_of(updates), [&](const std::vector<size_t>& u) {
      std::vector<size_t> at(u.begin() + static_cast<long>(ax), u.begin() + static_cast<long>(ax + ni));
      int64_t i = static_cast<int64_t>(indices.flat(flat_of(at, shape_of(indices))));
      if (i < 0) i += d;
      if (i < 0 || i >= d) return;
      std::vector<size_t> dst(u.begin(), u.begin() + static_cast<long>(ax));
      dst.push_back(static_cast<size_t>(i));
      dst.insert(dst.end(), u.begin() + static_cast<long>(ax + ni), u.end());
      c.out.flat(flat_of(dst, shape_of(data))) += updates.flat(flat_of(u, shape_of(updates)));
    });
  };
  r.find_mut("tile")->reference = [](RefCtx& c) {
    auto reps = c.attrs.at("repeats").get<std::vector<size_t>>();
    std::vector<size_t> in = shape_of(*c.in[0]), shape = in;
    for (size_t i = 0; i < shape.size(); ++i) shape[i] *= reps[i];
    c.out = Array::from_shape(shape);
    for_each_index(shape, [&](const std::vector<size_t>& o) {
      std::vector<size_t> src(o.size());
      for (size_t i = 0; i < o.size(); ++i) src[i] = o[i] % in[i];
      c.out.flat(flat_of(o, shape)) = c.in[0]->flat(flat_of(src, in));
    });
  };
  r.find_mut("flip")->reference = [](RefCtx& c) {
    std::vector<size_t> shape = shape_of(*c.in[0]);
    std::vector<bool> flipped(shape.size(), false);
    for (int64_t ax : c.attrs.at("axes").get<std::vector<int64_t>>())
      flipped[static_cast<size_t>(normalize_axis(ax, static_cast<int>(shape.size())))] = true;
    c.out = Array::from_shape(shape);
    for_each_index(shape, [&](const std::vector<size_t>& o) {
      std::vector<size_t> src(o.size());
      for (size_t i = 0; i < o.size(); ++i) src[i] = flipped[i] ? shape[i] - 1 - o[i] : o[i];
      c.out.flat(flat_of(o, shape)) = c.in[0]->flat(flat_of(src, shape));
    });
  };
  r.find_mut("range")->reference = [](RefCtx& c) {
    const size_t n = static_cast<size_t>(c.node.type.shape.at(0));
    const double start = c.attrs.at("start").get<double>(), delta = c.attrs.at("delta").get<double>();
    c.out = Array::from_shape({n});
    for (size_t i = 0; i < n; ++i) c.out(i) = start + static_cast<double>(i) * delta;
    if (!is_float(c.node.type.dtype))
      for (double& v : c.out) v = std::trunc(v);
  };
}

// ---- lowering ----
void add_movement_lowering(OpRegistry& r) {
  r.find_mut("concat")->lower = [](LowerCtx& c) {
    const int ax = axis_of(c.attrs, c.out.shape.size());
    auto k = c.kernel("concat along axis " + std::to_string(ax));
    int64_t offset = 0;
    for (const BufRef& x : c.in) {
      k.loops(x.shape, [&](const std::vector<E>& idx) {
        std::vector<E> o = idx;
        o[static_cast<size_t>(ax)] = o[static_cast<size_t>(ax)] + E(offset);
        k.store(c.out, c.out.offset(o), k.load(x, x.offset(idx)));
      }, parallel_for(c, x.shape));
      offset += x.shape[static_cast<size_t>(ax)];
    }
  };
  r.find_mut("slice")->lower = [](LowerCtx& c) {
    auto axes = resolve_slice(c.attrs, c.in[0].shape);
    auto k = c.kernel("slice " + shape_str(c.in[0].shape) + " -> " + shape_str(c.out.shape));
    k.loops(c.out.shape, [&](const std::vector<E>& o) {
      std::vector<E> src(o.size());
      for (size_t i = 0; i < o.size(); ++i) src[i] = E(axes[i].start) + o[i] * E(axes[i].step);
      k.store(c.out, c.out.offset(o), k.load(c.in[0], c.in[0].offset(src)));
    }, parallel_for(c, c.out.shape));
  };
  // Each output element: the dy element sliced from it, or zero.
  r.find_mut("slice_grad")->lower = [](LowerCtx& c) {
    auto axes = resolve_slice(c.attrs, c.out.shape);
    auto k = c.kernel("slice gradient " + shape_str(c.in[0].shape) + " -> " + shape_str(c.out.shape));
    k.loops(c.out.shape, [&](const std::vector<E>& o) {
      std::vector<E> at(o.size());
      E hit;
      bool any = false;
      for (size_t i = 0; i < o.size(); ++i) {
        if (axes[i].start == 0 && axes[i].step == 1 && axes[i].count == c.out.shape[i]) {
          at[i] = o[i];
          continue;
        }
        E rel = o[i] - E(axes[i].start), q = rel / E(axes[i].step);
        E here = (rel % E(axes[i].step) == E(0)) && (q >= E(0)) && (q < E(axes[i].count));
        at[i] = lower::select(here, q, E(0));
        hit = any ? (hit && here) : here;
        any = true;
      }
      E v = k.load(c.in[0], c.in[0].offset(at));
      k.store(c.out, c.out.offset(o), any ? lower::select(hit, v, lower::lit(0, v.type())) : v);
    }, parallel_for(c, c.out.shape));
  };
  r.find_mut("pad")->lower = [](LowerCtx& c) {
    PadSpec p = pad_spec(c.attrs, c.in[0].shape);
    auto k = c.kernel("pad (" + p.mode + ") " + shape_str(c.in[0].shape) + " -> " + shape_str(c.out.shape));
    k.loops(c.out.shape, [&](const std::vector<E>& o) {
      std::vector<E> src(o.size());
      E all_inside;
      bool any = false;
      for (size_t i = 0; i < o.size(); ++i) {
        if (!p.before[i] && !p.after[i]) {
          src[i] = o[i];
          continue;
        }
        E inside;
        src[i] = pad_source_expr(o[i], p.before[i], c.in[0].dim(static_cast<int>(i)), p.mode, inside);
        all_inside = any ? (all_inside && inside) : inside;
        any = true;
      }
      E v = k.load(c.in[0], c.in[0].offset(src));
      if (p.mode == "constant" && any) v = lower::select(all_inside, v, lower::lit(p.value, v.type()));
      k.store(c.out, c.out.offset(o), v);
    }, parallel_for(c, c.out.shape));
  };
  r.find_mut("gather")->lower = [](LowerCtx& c) {
    const BufRef &data = c.in[0], &indices = c.in[1];
    const int ax = axis_of(c.attrs, data.shape.size());
    const int64_t d = data.shape[static_cast<size_t>(ax)];
    auto k = c.kernel("gather along axis " + std::to_string(ax));
    k.loops(c.out.shape, [&](const std::vector<E>& o) {
      Picked p = pick(k, indices, o, ax, d);
      std::vector<E> src(o.begin(), o.begin() + ax);
      src.push_back(p.index);
      src.insert(src.end(), o.begin() + ax + indices.rank(), o.end());
      E v = k.load(data, data.offset(src));
      k.store(c.out, c.out.offset(o), lower::select(p.valid, v, lower::lit(0, v.type())));
    }, parallel_for(c, c.out.shape));
  };
  // A copy of data, then every update added in index order (one thread:
  // repeated indices add up in the same order on every run).
  r.find_mut("scatter_add")->lower = [](LowerCtx& c) {
    const BufRef &data = c.in[0], &indices = c.in[1], &updates = c.in[2];
    const int ax = axis_of(c.attrs, data.shape.size());
    const int64_t d = data.shape[static_cast<size_t>(ax)];
    auto k = c.kernel("scatter_add along axis " + std::to_string(ax));
    k.loop("i", 0, c.out.size(), [&](E i) { k.store(c.out, i, k.load(data, i)); }, parallel_for(c, c.out.shape));
    k.loops(updates.shape, [&](const std::vector<E>& u) {
      Picked p = pick(k, indices, u, ax, d);
      std::vector<E> dst(u.begin(), u.begin() + ax);
      dst.push_back(p.index);
      dst.insert(dst.end(), u.begin() + ax + indices.rank(), u.end());
      E at = c.out.offset(dst);
      E add = k.load(updates, updates.offset(u));
      k.store(c.out, at, k.load(c.out, at) + lower::select(p.valid, add, lower::lit(0, add.type())));
    });
  };
  r.find_mut("tile")->lower = [](LowerCtx& c) {
    auto k = c.kernel("tile " + c.attrs.at("repeats").dump());
    k.loops(c.out.shape, [&](const std::vector<E>& o) {
      std::vector<E> src(o.size());
      for (size_t i = 0; i < o.size(); ++i)
        src[i] = c.out.shape[i] == c.in[0].shape[i] ? o[i] : o[i] % c.in[0].dim(static_cast<int>(i));
      k.store(c.out, c.out.offset(o), k.load(c.in[0], c.in[0].offset(src)));
    }, parallel_for(c, c.out.shape));
  };
  r.find_mut("flip")->lower = [](LowerCtx& c) {
    std::vector<bool> flipped(c.out.shape.size(), false);
    for (int64_t ax : c.attrs.at("axes").get<std::vector<int64_t>>())
      flipped[static_cast<size_t>(normalize_axis(ax, c.out.rank()))] = true;
    auto k = c.kernel("flip " + c.attrs.at("axes").dump());
    k.loops(c.out.shape, [&](const std::vector<E>& o) {
      std::vector<E> src(o.size());
      for (size_t i = 0; i < o.size(); ++i) src[i] = flipped[i] ? c.out.dim(static_cast<int>(i)) - E(1) - o[i] : o[i];
      k.store(c.out, c.out.offset(o), k.load(c.in[0], c.in[0].offset(src)));
    }, parallel_for(c, c.out.shape));
  };
  r.find_mut("range")->lower = [](LowerCtx& c) {
    const double start = c.attrs.at("start").get<double>(), delta = c.attrs.at("delta").get<double>();
    const lower::Scalar t = c.out.scalar();
    auto k = c.kernel("range");
    k.loop("i", 0, c.out.size(), [&](E i) {
      if (lower::is_float(t)) {
        E x = cast(i, t);
        k.store(c.out, i, lower::lit(start, t) + x * lower::lit(delta, t));
      } else {
        E x = cast(lower::lit(start, lower::Scalar::f64) + cast(i, lower::Scalar::f64) * lower::lit(delta, lower::Scalar::f64), t);
        k.store(c.out, i, x);
      }
    });
  };
}

}  // namespace kiln
