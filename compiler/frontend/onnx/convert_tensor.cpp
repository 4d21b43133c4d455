// ONNX data movement: reshapes, transposes, slices, gathers, pads, tiles.
// Shape-setting inputs (a Reshape's shape, Slice's starts) must be known at
// import: kiln compiles static shapes.
#include <algorithm>
#include <numeric>

#include "compiler/frontend/onnx/convert.h"

namespace kiln::onnx {

using json = nlohmann::json;

namespace {

int64_t product(const Shape& s, size_t from, size_t to) {
  int64_t p = 1;
  for (size_t i = from; i < to && i < s.size(); ++i) p *= s[i];
  return p;
}

bool open(const Shape& s) { return !s.empty() && s[0] == kOpenDim; }

// A reshape to `target`, static or with the open batch dimension kept first.
std::string reshape_to(NodeCtx& c, const std::string& x, const Shape& in, Shape target) {
  if (open(in)) {
    if (target.empty() || (target[0] != kOpenDim && target[0] != -1) ||
        product(target, 1, target.size()) != product(in, 1, in.size()))
      unsupported("a reshape that moves the open batch dimension (input " + shape_str(in) + ", target " +
                  shape_str(target) + ")");
    target[0] = -1;
  }
  return c.emit("reshape", {x}, {{"shape", ints_json(target)}});
}

// axes from the attribute (older opsets) or input `input` (newer).
std::vector<int64_t> axes_of(NodeCtx& c, int since_input_opset, int input) {
  if (c.opset() >= since_input_opset) return c.has(input) ? c.need_ints(input, "axes") : std::vector<int64_t>{};
  return c.attr_ints("axes");
}

}  // namespace

void register_tensor(ConverterTable& t) {
  t["Reshape"] = [](NodeCtx& c) {
    Shape in = c.shape(0);
    std::vector<int64_t> s = c.opset() < 5 ? c.attr_ints("shape") : c.need_ints(1, "shape");
    bool allowzero = c.attr_int("allowzero", 0) != 0;
    // Where the run-time batch size (read by Shape from the open dimension)
    // or a copied open dimension lands, the batch goes: first, and only there.
    int batch_at = -1, inferred = -1;
    for (size_t i = 0; i < s.size(); ++i) {
      if (s[i] == 0 && !allowzero) {
        if (i >= in.size()) invalid("shape entry " + std::to_string(i) + " is 0 (copy) but the input has rank " + std::to_string(in.size()));
        s[i] = in[i];
        if (s[i] == kOpenDim) batch_at = static_cast<int>(i);
      } else if (s[i] == kBatchSizeAtImport) {
        batch_at = static_cast<int>(i);
      } else if (s[i] == -1) {
        if (inferred >= 0) invalid("shape has two -1 entries");
        inferred = static_cast<int>(i);
      } else if (s[i] < 0) {
        invalid("shape entry " + std::to_string(s[i]));
      }
    }
    if (batch_at > 0 || (batch_at == 0 && !open(in))) unsupported("a reshape that moves the open batch dimension");
    if (open(in)) {
      // [batch, rest...]: the batch first (as -1), at most one other entry inferred per batch item.
      if (batch_at < 0 && inferred != 0) unsupported("a reshape that moves the open batch dimension");
      if (batch_at == 0 && inferred == 0) invalid("shape has two -1 entries");
      int64_t per_item = product(in, 1, in.size()), rest = 1;
      for (size_t i = 1; i < s.size(); ++i)
        if (static_cast<int>(i) != inferred) rest *= s[i];
      if (batch_at == 0 && inferred > 0) {
        if (rest == 0 || per_item % rest) invalid("cannot reshape " + shape_str(in) + " to " + shape_str(s));
        s[static_cast<size_t>(inferred)] = per_item / rest;
      }
      s[0] = -1;
    } else if (inferred >= 0) {
      int64_t rest = 1;
      for (size_t i = 0; i < s.size(); ++i)
        if (static_cast<int>(i) != inferred) rest *= s[i];
      int64_t total = product(in, 0, in.size());
      if (rest == 0 || total % rest) invalid("cannot reshape " + shape_str(in) + " to " + shape_str(s));
      s[static_cast<size_t>(inferred)] = total / rest;
    }
    c.out(0, reshape_to(c, c.in(0), in, s));
  };
  t["Flatten"] = [](NodeCtx& c) {
    Shape in = c.shape(0);
    int64_t r = static_cast<int64_t>(in.size()), axis = c.attr_int("axis", 1);
    if (axis < 0) axis += r;
    if (axis < 0 || axis > r) invalid("axis " + std::to_string(c.attr_int("axis", 1)) + " is out of range for rank " + std::to_string(r));
    Shape target = {product(in, 0, static_cast<size_t>(axis)), product(in, static_cast<size_t>(axis), in.size())};
    if (open(in)) {
      if (axis == 0) unsupported("Flatten with axis 0 of an input with an open batch dimension");
      target[0] = kOpenDim;
    }
    c.out(0, reshape_to(c, c.in(0), in, target));
  };
  t["Squeeze"] = [](NodeCtx& c) {
    std::vector<int64_t> axes = axes_of(c, 13, 1);
    for (auto& a : axes) a = NodeCtx::axis(a, c.rank(0));
    c.emit_out(0, "squeeze", {c.in(0)}, {{"axes", ints_json(axes)}});
  };
  t["Unsqueeze"] = [](NodeCtx& c) {
    std::vector<int64_t> axes = axes_of(c, 13, 1);
    int64_t out_rank = c.rank(0) + static_cast<int64_t>(axes.size());
    for (auto& a : axes) a = NodeCtx::axis(a, out_rank);
    std::sort(axes.begin(), axes.end());
    c.emit_out(0, "unsqueeze", {c.in(0)}, {{"axes", ints_json(axes)}});
  };
  t["Transpose"] = [](NodeCtx& c) {
    std::vector<int64_t> perm(static_cast<size_t>(c.rank(0)));
    std::iota(perm.rbegin(), perm.rend(), 0);
    perm = c.attr_ints("perm", perm);
    c.emit_out(0, "transpose", {c.in(0)}, {{"perm", ints_json(perm)}});
  };
  t["Concat"] = [](NodeCtx& c) {
    int64_t axis = NodeCtx::axis(c.attr_int("axis", c.opset() < 4 ? 1 : 0), c.rank(0));
    std::vector<std::string> ins;
    for (int i = 0; i < c.inputs(); ++i)
      if (c.has(i) && numel(c.shape(i)) != 0) ins.push_back(c.in(i));  // empty pieces add nothing
    if (ins.empty()) invalid("every input is empty");
    if (ins.size() == 1) return void(c.emit_out(0, "add", {ins[0], c.scalar(0, c.dtype(0))}));
    c.emit_out(0, "concat", ins, {{"axis", axis}});
  };
  t["Split"] = [](NodeCtx& c) {
    Shape in = c.shape(0);
    int64_t axis = NodeCtx::axis(c.attr_int("axis", 0), c.rank(0));
    std::vector<int64_t> sizes = c.opset() >= 13 ? (c.has(1) ? c.need_ints(1, "split") : std::vector<int64_t>{})
                                                 : c.attr_ints("split");
    if (c.opset() < 13 && c.has(1)) sizes = c.need_ints(1, "split");  // opset 2-12 also allowed it as an input
    int64_t d = in[static_cast<size_t>(axis)];
    if (sizes.empty()) {
      int64_t n = c.outputs();
      if (d == kOpenDim) unsupported("splitting the open batch dimension");
      int64_t part = (d + n - 1) / n;
      for (int64_t i = 0; i < n; ++i) sizes.push_back(std::min(part, d - part * i));
    }
    if (static_cast<int>(sizes.size()) != c.outputs())
      invalid(std::to_string(sizes.size()) + " sizes for " + std::to_string(c.outputs()) + " outputs");
    for (int i = 0; i < c.outputs(); ++i)
      c.emit_out(i, "split", {c.in(0)}, {{"axis", axis}, {"sizes", ints_json(sizes)}, {"index", i}});
  };
  t["Slice"] = [](NodeCtx& c) {
    std::vector<int64_t> starts, ends, axes, steps;
    if (c.opset() < 10) {
      starts = c.attr_ints("starts");
      ends = c.attr_ints("ends");
      axes = c.attr_ints("axes");
    } else {
      starts = c.need_ints(1, "starts");
      ends = c.need_ints(2, "ends");
      if (c.has(3)) axes = c.need_ints(3, "axes");
      if (c.has(4)) steps = c.need_ints(4, "steps");
    }
    json a = {{"starts", ints_json(starts)}, {"ends", ints_json(ends)}};
    if (!axes.empty()) a["axes"] = ints_json(axes);
    if (!steps.empty()) a["steps"] = ints_json(steps);
    c.emit_out(0, "slice", {c.in(0)}, a);
  };
  t["Gather"] = [](NodeCtx& c) {
    int64_t axis = NodeCtx::axis(c.attr_int("axis", 0), c.rank(0));
    c.emit_out(0, "gather", {c.in(0), c.in(1)}, {{"axis", axis}});
  };
  t["GatherElements"] = [](NodeCtx& c) {
    int64_t axis = NodeCtx::axis(c.attr_int("axis", 0), c.rank(0));
    std::string idx = c.in(1);
    // Negative indices count from the end of the axis.
    int64_t d = c.shape(0)[static_cast<size_t>(axis)];
    DType it = c.dtype(1);
    std::string neg = c.emit("compare", {idx, c.scalar(0, it)}, {{"kind", "lt"}});
    idx = c.emit("select", {neg, c.emit("add", {idx, c.scalar(static_cast<double>(d), it)}), idx});
    c.emit_out(0, "gather_elements", {c.in(0), idx}, {{"axis", axis}});
  };
  t["Tile"] = [](NodeCtx& c) {
    std::vector<int64_t> repeats = c.need_ints(1, "repeats");
    c.emit_out(0, "tile", {c.in(0)}, {{"repeats", ints_json(repeats)}});
  };
  t["Expand"] = [](NodeCtx& c) {
    std::vector<int64_t> s = c.need_ints(1, "shape");
    Shape in = c.shape(0);
    size_t rank = std::max(s.size(), in.size());
    Shape out(rank);
    for (size_t i = 0; i < rank; ++i) {
      int64_t a = i + in.size() >= rank ? in[i + in.size() - rank] : 1;
      int64_t b = i + s.size() >= rank ? s[i + s.size() - rank] : 1;
      if (a != b && a != 1 && b != 1) invalid("cannot expand " + shape_str(in) + " to " + shape_str(s));
      out[i] = a == 1 ? b : a;
    }
    if (out == in) return void(c.emit_out(0, "add", {c.in(0), c.scalar(0, c.dtype(0))}));
    c.emit_out(0, "broadcast", {c.in(0)}, {{"shape", ints_json(out)}});
  };
  t["Pad"] = [](NodeCtx& c) {
    std::string mode = c.attr_string("mode", "constant");
    std::vector<int64_t> pads;
    double value = 0;
    if (c.opset() < 11) {
      pads = c.attr_ints(c.opset() < 2 ? "paddings" : "pads");
      value = c.attr_float("value", 0.0);
    } else {
      pads = c.need_ints(1, "pads");
      if (c.has(2)) {
        const interp::Value& v = c.need_known(2, "constant_value");
        if (v.data.size() != 1) invalid("constant_value must hold one value");
        value = v.data[0];
      }
      if (c.has(3)) unsupported("Pad's axes input (opset 18)");
    }
    if (mode != "constant" && mode != "reflect" && mode != "edge") unsupported("mode '" + mode + "'");
    size_t rank = static_cast<size_t>(c.rank(0));
    if (pads.size() != 2 * rank) invalid("pads holds " + std::to_string(pads.size()) + " values for rank " + std::to_string(rank));
    std::string x = c.in(0);
    // Negative pads crop: a slice first, then the non-negative rest.
    std::vector<int64_t> starts, ends, axes;
    for (size_t i = 0; i < rank; ++i)
      if (pads[i] < 0 || pads[i + rank] < 0) {
        int64_t d = c.shape(0)[i];
        axes.push_back(static_cast<int64_t>(i));
        starts.push_back(std::max<int64_t>(0, -pads[i]));
        ends.push_back(d - std::max<int64_t>(0, -pads[i + rank]));
        pads[i] = std::max<int64_t>(0, pads[i]);
        pads[i + rank] = std::max<int64_t>(0, pads[i + rank]);
      }
    if (!axes.empty())
      x = c.emit("slice", {x}, {{"starts", ints_json(starts)}, {"ends", ints_json(ends)}, {"axes", ints_json(axes)}});
    c.emit_out(0, "pad", {x}, {{"pads", ints_json(pads)}, {"mode", mode}, {"value", value}});
  };
  t["DepthToSpace"] = [](NodeCtx& c) {
    int64_t b = c.attr_int("blocksize");
    std::string mode = c.attr_string("mode", "DCR");
    Shape s = c.shape(0);
    if (s.size() != 4 || open(s)) unsupported("DepthToSpace needs a static [N, C, H, W] input");
    if (b < 1 || s[1] % (b * b)) invalid("blocksize " + std::to_string(b) + " does not divide the channels in squares");
    int64_t n = s[0], ch = s[1], h = s[2], w = s[3];
    Shape mid = mode == "DCR" ? Shape{n, b, b, ch / (b * b), h, w} : Shape{n, ch / (b * b), b, b, h, w};
    std::vector<int64_t> perm = mode == "DCR" ? std::vector<int64_t>{0, 3, 4, 1, 5, 2} : std::vector<int64_t>{0, 1, 4, 2, 5, 3};
    if (mode != "DCR" && mode != "CRD") unsupported("mode '" + mode + "'");
    std::string x = c.emit("reshape", {c.in(0)}, {{"shape", ints_json(mid)}});
    x = c.emit("transpose", {x}, {{"perm", ints_json(perm)}});
    c.emit_out(0, "reshape", {x}, {{"shape", ints_json({n, ch / (b * b), h * b, w * b})}});
  };
  t["SpaceToDepth"] = [](NodeCtx& c) {
    int64_t b = c.attr_int("blocksize");
    Shape s = c.shape(0);
    if (s.size() != 4 || open(s)) unsupported("SpaceToDepth needs a static [N, C, H, W] input");
    if (b < 1 || s[2] % b || s[3] % b) invalid("blocksize " + std::to_string(b) + " does not divide H and W");
    int64_t n = s[0], ch = s[1], h = s[2], w = s[3];
    std::string x = c.emit("reshape", {c.in(0)}, {{"shape", ints_json({n, ch, h / b, b, w / b, b})}});
    x = c.emit("transpose", {x}, {{"perm", ints_json({0, 3, 5, 1, 2, 4})}});
    c.emit_out(0, "reshape", {x}, {{"shape", ints_json({n, ch * b * b, h / b, w / b})}});
  };
  t["CumSum"] = [](NodeCtx& c) {
    std::vector<int64_t> axis = c.need_ints(1, "axis");
    if (axis.size() != 1) invalid("axis must hold one value");
    c.emit_out(0, "cumsum", {c.in(0)},
               {{"axis", NodeCtx::axis(axis[0], c.rank(0))}, {"exclusive", c.attr_int("exclusive", 0) != 0},
                {"reverse", c.attr_int("reverse", 0) != 0}});
  };
  t["Trilu"] = [](NodeCtx& c) {
    bool upper = c.attr_int("upper", 1) != 0;
    int64_t k = 0;
    if (c.has(1)) {
      std::vector<int64_t> kv = c.need_ints(1, "k");
      if (kv.size() != 1) invalid("k must hold one value");
      k = kv[0];
    }
    Shape s = c.shape(0);
    if (s.size() < 2) invalid("Trilu needs rank >= 2");
    int64_t rows = s[s.size() - 2], cols = s.back();
    check_known_count(rows * cols);
    // A [rows, cols] bool mask, broadcast over the leading axes.
    interp::Value mask{DType::boolean, {rows, cols}, {}};
    for (int64_t i = 0; i < rows; ++i)
      for (int64_t j = 0; j < cols; ++j) mask.data.push_back(upper ? (j - i >= k) : (j - i <= k));
    c.emit_out(0, "select", {c.constant(mask), c.in(0), c.scalar(0, c.dtype(0))});
  };
  t["ScatterElements"] = [](NodeCtx& c) {
    std::string reduction = c.attr_string("reduction", "none");
    int64_t axis = NodeCtx::axis(c.attr_int("axis", 0), c.rank(0));
    std::string data = c.in(0), idx = c.in(1), upd = c.in(2);
    int64_t d = c.shape(0)[static_cast<size_t>(axis)];
    DType it = c.dtype(1), dt = c.dtype(0);
    std::string neg = c.emit("compare", {idx, c.scalar(0, it)}, {{"kind", "lt"}});
    idx = c.emit("select", {neg, c.emit("add", {idx, c.scalar(static_cast<double>(d), it)}), idx});
    json a = {{"axis", axis}};
    if (reduction == "add") return void(c.emit_out(0, "scatter_elements_add", {data, idx, upd}, a));
    if (reduction != "none") unsupported("reduction '" + reduction + "'");
    // Replace: where an index lands (ONNX leaves duplicates undefined), the update; elsewhere the data.
    std::string zeros = c.emit("mul", {data, c.scalar(0, dt)});
    std::string hit = c.emit("scatter_elements_add", {zeros, idx, c.emit("add", {c.emit("mul", {upd, c.scalar(0, dt)}), c.scalar(1, dt)})}, a);
    std::string placed = c.emit("scatter_elements_add", {zeros, idx, upd}, a);
    c.emit_out(0, "select", {c.emit("compare", {hit, c.scalar(0, dt)}, {{"kind", "gt"}}), placed, data});
  };
  t["OneHot"] = [](NodeCtx& c) {
    const interp::Value& depth_v = c.need_known(1, "depth");
    if (depth_v.data.size() != 1) invalid("depth must hold one value");
    if (numel(c.shape(2)) != 2) invalid("values must hold two values (off, on)");
    int64_t depth = value_ints(depth_v)[0];
    if (depth < 1) invalid("depth must be positive");
    check_known_count(depth);
    int64_t axis = NodeCtx::axis(c.attr_int("axis", -1), c.rank(0) + 1);
    std::string idx = c.in(0);
    DType it = c.dtype(0);
    if (is_float(it)) idx = c.emit("cast", {idx}, {{"dtype", "i64"}}), it = DType::i64;
    // Negative indices count from depth.
    std::string neg = c.emit("compare", {idx, c.scalar(0, it)}, {{"kind", "lt"}});
    idx = c.emit("select", {neg, c.emit("add", {idx, c.scalar(static_cast<double>(depth), it)}), idx});
    if (it != DType::i32) idx = c.emit("cast", {idx}, {{"dtype", "i32"}});
    std::string hot = c.emit("one_hot", {idx}, {{"depth", depth}, {"axis", axis}, {"dtype", "f64"}});
    // values = [off, on], read at run time.
    std::string values = c.in(2);
    if (c.rank(2) != 1) values = c.emit("reshape", {values}, {{"shape", {2}}});
    std::string off = c.emit("gather", {values, c.scalar(0, DType::i32)}, {{"axis", 0}});
    std::string on = c.emit("gather", {values, c.scalar(1, DType::i32)}, {{"axis", 0}});
    c.emit_out(0, "select", {c.emit("compare", {hot, c.scalar(0, DType::f64)}, {{"kind", "gt"}}), on, off});
  };
}

}  // namespace kiln::onnx
