// ONNX indexing ops written from kiln's gathers and scatters: TopK (k rounds
// of arg-max and masking), GatherND and ScatterND (row-major linear indices
// into a flattened tensor), Scatter, ReverseSequence, Einsum (products
// broadcast over every index, then the summed ones reduced).
#include <algorithm>
#include <cmath>
#include <limits>

#include "compiler/frontend/onnx/convert.h"

namespace kiln::onnx {

using json = nlohmann::json;

namespace {

int64_t product(const Shape& s, size_t from, size_t to) {
  int64_t p = 1;
  for (size_t i = from; i < to; ++i) p *= s[i];
  return p;
}

void require_static(const Shape& s, const char* what) {
  if (has_open_dim(s)) unsupported(std::string(what) + " with an open batch dimension");
}

// Linear row-major index into data's first `batch + k` axes, from
// indices [..., k] (negative entries count from the end), for GatherND/ScatterND.
std::string linear_index(NodeCtx& c, const std::string& indices, const Shape& data, const Shape& ishape, int64_t batch) {
  size_t k = static_cast<size_t>(ishape.back());
  size_t b = static_cast<size_t>(batch);
  DType it = c.kiln_type(indices).dtype;
  interp::Value dims{it, {static_cast<int64_t>(k)}, {}}, strides{it, {static_cast<int64_t>(k)}, {}};
  for (size_t j = 0; j < k; ++j) {
    dims.data.push_back(static_cast<double>(data[b + j]));
    strides.data.push_back(static_cast<double>(product(data, b + j + 1, b + k)));
  }
  std::string idx = indices;
  std::string neg = c.emit("compare", {idx, c.scalar(0, it)}, {{"kind", "lt"}});
  idx = c.emit("select", {neg, c.emit("add", {idx, c.constant(dims)}), idx});
  std::string lin = c.emit("reduce_sum", {c.emit("mul", {idx, c.constant(strides)})}, {{"axes", {-1}}});
  if (b > 0) {  // each batch position reads its own block of the flattened data
    Shape bshape(ishape.begin(), ishape.begin() + static_cast<long>(b));
    bshape.resize(ishape.size() - 1, 1);
    interp::Value offset{it, bshape, {}};
    int64_t block = product(data, b, b + k);
    for (int64_t i = 0; i < product(ishape, 0, b); ++i) offset.data.push_back(static_cast<double>(i * block));
    lin = c.emit("add", {lin, c.constant(offset)});
  }
  return lin;
}

std::string flatten_leading(NodeCtx& c, const std::string& x, const Shape& s, size_t n) {
  Shape flat = {product(s, 0, n)};
  flat.insert(flat.end(), s.begin() + static_cast<long>(n), s.end());
  return c.emit("reshape", {x}, {{"shape", ints_json(flat)}});
}

void top_k(NodeCtx& c) {
  int64_t k = c.opset() < 10 ? c.attr_int("k") : [&] {
    auto v = c.need_ints(1, "K");
    if (v.size() != 1) invalid("K must hold one value");
    return v[0];
  }();
  int64_t axis = NodeCtx::axis(c.attr_int("axis", -1), c.rank(0));
  bool largest = c.attr_int("largest", 1) != 0;
  c.attr_int("sorted", 1);  // the results come out sorted either way
  std::string x = c.in(0);
  DType dt = c.dtype(0);
  int64_t d = c.shape(0)[static_cast<size_t>(axis)];
  if (k < 0 || k > d) invalid("K = " + std::to_string(k) + " for an axis of " + std::to_string(d));
  double fill = is_float(dt) ? (largest ? -INFINITY : INFINITY)
                             : (largest ? static_cast<double>(std::numeric_limits<int32_t>::min()) : static_cast<double>(std::numeric_limits<int32_t>::max()));
  std::vector<std::string> values, indices;
  std::string cur = x;
  for (int64_t j = 0; j < k; ++j) {
    // The first extreme wins ties: ONNX orders equal values by index.
    std::string idx = c.emit(largest ? "argmax" : "argmin", {cur}, {{"axis", axis}});
    std::string at = c.emit("unsqueeze", {idx}, {{"axes", {axis}}});
    values.push_back(c.emit("gather_elements", {x, at}, {{"axis", axis}}));
    indices.push_back(at);
    if (j + 1 < k) {
      std::string hit = c.emit("one_hot", {idx}, {{"depth", d}, {"axis", axis}});
      cur = c.emit("select", {c.emit("compare", {hit, c.scalar(0)}, {{"kind", "gt"}}), c.scalar(fill, dt), cur});
    }
  }
  auto join = [&](const std::vector<std::string>& parts) {
    return parts.size() == 1 ? parts[0] : c.emit("concat", parts, {{"axis", axis}});
  };
  c.emit_out(0, "add", {join(values), c.scalar(0, dt)});
  c.emit_out(1, "cast", {join(indices)}, {{"dtype", "i64"}});
}

void einsum(NodeCtx& c) {
  std::string eq = c.attr_string("equation", "");
  eq.erase(std::remove(eq.begin(), eq.end(), ' '), eq.end());
  size_t arrow = eq.find("->");
  std::string lhs = eq.substr(0, arrow);
  std::vector<std::string> terms;
  for (size_t at = 0;;) {
    size_t comma = lhs.find(',', at);
    terms.push_back(lhs.substr(at, comma - at));
    if (comma == std::string::npos) break;
    at = comma + 1;
  }
  if (static_cast<int>(terms.size()) != c.inputs()) invalid("the equation names " + std::to_string(terms.size()) + " operands");
  // "..." becomes the capital letters A, B, ... aligned from the right.
  size_t ell_rank = 0;
  for (size_t i = 0; i < terms.size(); ++i)
    if (terms[i].find("...") != std::string::npos && static_cast<size_t>(c.rank(static_cast<int>(i))) + 3 < terms[i].size())
      invalid("operand '" + terms[i] + "' names more axes than its rank");
  for (size_t i = 0; i < terms.size(); ++i)
    if (terms[i].find("...") != std::string::npos)
      ell_rank = std::max(ell_rank, static_cast<size_t>(c.rank(static_cast<int>(i))) - (terms[i].size() - 3));
  std::string ell;
  for (size_t i = 0; i < ell_rank; ++i) ell += static_cast<char>('A' + i);
  for (size_t i = 0; i < terms.size(); ++i) {
    size_t at = terms[i].find("...");
    if (at == std::string::npos) continue;
    size_t mine = static_cast<size_t>(c.rank(static_cast<int>(i))) - (terms[i].size() - 3);
    terms[i].replace(at, 3, ell.substr(ell_rank - mine));
  }
  std::string out;
  if (arrow != std::string::npos) {
    out = eq.substr(arrow + 2);
    size_t at = out.find("...");
    if (at != std::string::npos) out.replace(at, 3, ell);
  } else {  // implicit: the ellipsis, then the letters that appear once, alphabetically
    std::string once;
    for (char ch = 'a'; ch <= 'z'; ++ch) {
      int n = 0;
      for (auto& t : terms) n += static_cast<int>(std::count(t.begin(), t.end(), ch));
      if (n == 1) once += ch;
    }
    out = ell + once;
  }
  std::string letters = out;  // output letters first, then the summed ones
  for (auto& t : terms) {
    if (static_cast<int>(t.size()) != c.rank(static_cast<int>(&t - &terms[0]))) invalid("operand '" + t + "' does not match its rank");
    for (char ch : t) {
      if (letters.find(ch) == std::string::npos) letters += ch;
    }
  }
  std::string prod;
  for (size_t i = 0; i < terms.size(); ++i) {
    std::string t = terms[i];
    std::string x = c.in(static_cast<int>(i));
    // A letter twice in one operand ("ii"): its diagonal, x times the identity, summed over the second.
    for (size_t q = 1; q < t.size(); ++q) {
      size_t p = t.find(t[q]);
      if (p == q) continue;
      Shape s = c.kiln_type(x).shape;
      if (s[p] != s[q]) invalid("index '" + std::string(1, t[q]) + "' has sizes " + std::to_string(s[p]) + " and " + std::to_string(s[q]));
      Shape ms(t.size(), 1);
      ms[p] = ms[q] = s[p];
      interp::Value eye{c.dtype(static_cast<int>(i)), ms, {}};
      for (int64_t a = 0; a < s[p]; ++a)
        for (int64_t b = 0; b < s[p]; ++b) eye.data.push_back(a == b);
      x = c.emit("reduce_sum", {c.emit("mul", {x, c.constant(eye)})}, {{"axes", {static_cast<int64_t>(q)}}});
      t.erase(q, 1);
      --q;
    }
    std::vector<int64_t> perm(t.size());
    for (size_t j = 0; j < t.size(); ++j) perm[j] = static_cast<int64_t>(j);
    std::sort(perm.begin(), perm.end(), [&](int64_t a, int64_t b) { return letters.find(t[static_cast<size_t>(a)]) < letters.find(t[static_cast<size_t>(b)]); });
    if (!std::is_sorted(perm.begin(), perm.end())) x = c.emit("transpose", {x}, {{"perm", ints_json(perm)}});
    std::vector<int64_t> missing;
    for (size_t p = 0; p < letters.size(); ++p)
      if (t.find(letters[p]) == std::string::npos) missing.push_back(static_cast<int64_t>(p));
    if (!missing.empty()) x = c.emit("unsqueeze", {x}, {{"axes", ints_json(missing)}});
    prod = prod.empty() ? x : c.emit("mul", {prod, x});
  }
  std::vector<int64_t> summed;
  for (size_t p = out.size(); p < letters.size(); ++p) summed.push_back(static_cast<int64_t>(p));
  if (!summed.empty()) prod = c.emit("reduce_sum", {prod}, {{"axes", ints_json(summed)}});
  else prod = c.emit("add", {prod, c.scalar(0, c.dtype(0))});
  c.out(0, prod);
}

// det of the [..., n, n] matrix's rows `rows` and columns `cols` (n <= 4):
// cofactor expansion along the first row.
std::string cofactor_det(NodeCtx& c, const std::string& x, const std::vector<int64_t>& rows, const std::vector<int64_t>& cols, int rank) {
  auto at = [&](int64_t i, int64_t j) {
    std::string e = c.emit("slice", {x}, {{"starts", {i, j}}, {"ends", {i + 1, j + 1}}, {"axes", {rank - 2, rank - 1}}});
    return c.emit("squeeze", {e}, {{"axes", {rank - 2, rank - 1}}});
  };
  if (rows.size() == 1) return at(rows[0], cols[0]);
  std::string sum;
  for (size_t k = 0; k < cols.size(); ++k) {
    std::vector<int64_t> sub_rows(rows.begin() + 1, rows.end()), sub_cols = cols;
    sub_cols.erase(sub_cols.begin() + static_cast<long>(k));
    std::string term = c.emit("mul", {at(rows[0], cols[k]), cofactor_det(c, x, sub_rows, sub_cols, rank)});
    sum = sum.empty() ? term : c.emit(k % 2 ? "sub" : "add", {sum, term});
  }
  return sum;
}

}  // namespace

void register_index(ConverterTable& t) {
  t["Det"] = [](NodeCtx& c) {
    Shape s = c.shape(0);
    int rank = c.rank(0);
    if (rank < 2 || s[static_cast<size_t>(rank - 1)] != s[static_cast<size_t>(rank - 2)]) invalid("Det needs [..., n, n]");
    int64_t n = s.back();
    if (n < 1 || n > 4) unsupported("Det of " + std::to_string(n) + " x " + std::to_string(n) + " matrices (kiln expands cofactors up to 4 x 4)");
    std::vector<int64_t> idx(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) idx[static_cast<size_t>(i)] = i;
    std::string d = cofactor_det(c, c.in(0), idx, idx, rank);
    c.emit_out(0, "add", {d, c.scalar(0, c.dtype(0))});
  };
  t["MaxUnpool"] = [](NodeCtx& c) {
    // X's values scattered into zeros at I, MaxPool's flat indices into the whole output tensor.
    Shape xs = c.shape(0);
    if (xs.size() < 3 || has_open_dim(xs) || c.shape(1) != xs) unsupported("MaxUnpool needs static X and I of the same shape");
    size_t n = xs.size() - 2;
    std::vector<int64_t> kernel = c.attr_ints("kernel_shape"), strides = c.attr_ints("strides", std::vector<int64_t>(n, 1)),
                         pads = c.attr_ints("pads", std::vector<int64_t>(2 * n, 0));
    if (kernel.size() != n || strides.size() != n || pads.size() != 2 * n) invalid("kernel_shape, strides and pads must match the spatial axes");
    Shape out = {xs[0], xs[1]};
    for (size_t i = 0; i < n; ++i) out.push_back((xs[i + 2] - 1) * strides[i] + kernel[i] - pads[i] - pads[i + n]);
    Shape padded = out;  // a larger output_shape: the unpooled tensor, zero-padded at the end of each axis
    if (c.has(2)) {
      std::vector<int64_t> given = c.need_ints(2, "output_shape");
      if (given.size() != out.size()) invalid("output_shape must have rank " + std::to_string(out.size()));
      for (size_t i = 0; i < out.size(); ++i)
        if (given[i] < out[i]) unsupported("an output_shape smaller than the unpooled size");
      padded.assign(given.begin(), given.end());
    }
    for (int64_t d : out)
      if (d < 1) invalid("output shape " + shape_str(out));
    std::string zeros = c.emit("broadcast", {c.scalar(0, c.dtype(0))}, {{"shape", {numel(out)}}});
    std::string flat_x = c.emit("reshape", {c.in(0)}, {{"shape", {numel(xs)}}});
    std::string flat_i = c.emit("reshape", {c.in(1)}, {{"shape", {numel(xs)}}});
    std::string y = c.emit("scatter_add", {zeros, flat_i, flat_x}, {{"axis", 0}});
    y = c.emit("reshape", {y}, {{"shape", ints_json(out)}});
    if (padded != out) {
      std::vector<int64_t> pads_out(2 * out.size(), 0);
      for (size_t i = 0; i < out.size(); ++i) pads_out[out.size() + i] = padded[i] - out[i];
      y = c.emit("pad", {y}, {{"pads", ints_json(pads_out)}});
    }
    c.out(0, y);
  };
  t["TopK"] = top_k;
  t["Einsum"] = einsum;
  t["GatherND"] = [](NodeCtx& c) {
    int64_t b = c.attr_int("batch_dims", 0);
    Shape data = c.shape(0), ishape = c.shape(1);
    require_static(data, "GatherND");
    require_static(ishape, "GatherND");
    if (b < 0 || ishape.empty() || b >= static_cast<int64_t>(ishape.size()) || ishape.back() < 1 ||
        ishape.back() + b > static_cast<int64_t>(data.size()))
      invalid("indices [..., k] must have 1 <= k <= rank(data) - batch_dims");
    std::string lin = linear_index(c, c.in(1), data, ishape, b);
    std::string flat = flatten_leading(c, c.in(0), data, static_cast<size_t>(b + ishape.back()));
    c.emit_out(0, "gather", {flat, lin}, {{"axis", 0}});
  };
  t["ScatterND"] = [](NodeCtx& c) {
    std::string reduction = c.attr_string("reduction", "none");
    Shape data = c.shape(0), ishape = c.shape(1);
    require_static(data, "ScatterND");
    require_static(ishape, "ScatterND");
    if (reduction != "none" && reduction != "add") unsupported("reduction '" + reduction + "'");
    if (ishape.empty() || ishape.back() < 1 || ishape.back() > static_cast<int64_t>(data.size()))
      invalid("indices [..., k] must have 1 <= k <= rank(data)");
    size_t k = static_cast<size_t>(ishape.back());
    std::string lin = linear_index(c, c.in(1), data, ishape, 0);
    std::string flat = flatten_leading(c, c.in(0), data, k);
    DType dt = c.dtype(0);
    std::string upd = c.in(2), result;
    if (reduction == "add") {
      result = c.emit("scatter_add", {flat, lin, upd}, {{"axis", 0}});
    } else {  // replace where an index lands (ONNX leaves duplicate indices undefined)
      std::string zeros = c.emit("mul", {flat, c.scalar(0, dt)});
      std::string ones = c.emit("add", {c.emit("mul", {upd, c.scalar(0, dt)}), c.scalar(1, dt)});
      std::string hit = c.emit("compare", {c.emit("scatter_add", {zeros, lin, ones}, {{"axis", 0}}), c.scalar(0, dt)}, {{"kind", "gt"}});
      result = c.emit("select", {hit, c.emit("scatter_add", {zeros, lin, upd}, {{"axis", 0}}), flat});
    }
    c.emit_out(0, "reshape", {result}, {{"shape", ints_json(data)}});
  };
  t["Compress"] = [](NodeCtx& c) {
    // The condition sets the output's size, so it must be known at import.
    const interp::Value& cond = c.need_known(1, "condition");
    std::string x = c.in(0);
    Shape s = c.shape(0);
    require_static(s, "Compress");
    int64_t axis = 0;
    if (c.has_attr("axis")) {
      axis = NodeCtx::axis(c.attr_int("axis", 0), c.rank(0));
    } else {  // no axis: the flattened input
      x = c.emit("reshape", {x}, {{"shape", {numel(s)}}});
      s = {numel(s)};
    }
    interp::Value idx{DType::i32, {0}, {}};
    for (size_t i = 0; i < cond.data.size() && static_cast<int64_t>(i) < s[static_cast<size_t>(axis)]; ++i)
      if (cond.data[i] != 0) idx.data.push_back(static_cast<double>(i));
    idx.shape = {static_cast<int64_t>(idx.data.size())};
    if (idx.data.empty()) unsupported("a condition that selects nothing (kiln tensors have no zero-size dimension)");
    c.emit_out(0, "gather", {x, c.constant(idx)}, {{"axis", axis}});
  };
  t["Scatter"] = [](NodeCtx& c) { converters().at("ScatterElements")(c); };
  t["ReverseSequence"] = [](NodeCtx& c) {
    int64_t batch_axis = c.attr_int("batch_axis", 1), time_axis = c.attr_int("time_axis", 0);
    Shape s = c.shape(0);
    require_static(s, "ReverseSequence");
    if (batch_axis == time_axis || batch_axis < 0 || time_axis < 0 || batch_axis > 1 || time_axis > 1 || s.size() < 2)
      invalid("batch_axis and time_axis must be 0 and 1 of an input of rank >= 2");
    int64_t steps = s[static_cast<size_t>(time_axis)];
    DType it = c.dtype(1);
    // t along the time axis, len along the batch axis: index = t < len ? len - 1 - t : t.
    Shape tshape(s.size(), 1), lshape(s.size(), 1);
    tshape[static_cast<size_t>(time_axis)] = steps;
    lshape[static_cast<size_t>(batch_axis)] = s[static_cast<size_t>(batch_axis)];
    interp::Value tv{it, tshape, {}};
    for (int64_t i = 0; i < steps; ++i) tv.data.push_back(static_cast<double>(i));
    std::string t_idx = c.constant(tv);
    std::string len = c.emit("reshape", {c.in(1)}, {{"shape", ints_json(lshape)}});
    std::string back = c.emit("sub", {c.emit("sub", {len, c.scalar(1, it)}), t_idx});
    std::string idx = c.emit("select", {c.emit("compare", {t_idx, len}, {{"kind", "lt"}}), back, c.emit("add", {t_idx, c.emit("mul", {len, c.scalar(0, it)})})});
    idx = c.emit("broadcast", {idx}, {{"shape", ints_json(s)}});
    c.emit_out(0, "gather_elements", {c.in(0), idx}, {{"axis", time_axis}});
  };
}

}  // namespace kiln::onnx
