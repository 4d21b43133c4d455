#include "compiler/ops/registry.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <numeric>

namespace kiln {

std::string_view attr_kind_name(AttrKind k) {
  switch (k) {
    case AttrKind::Int: return "int";
    case AttrKind::Float: return "float";
    case AttrKind::Bool: return "bool";
    case AttrKind::String: return "string";
    case AttrKind::IntList: return "int[]";
    case AttrKind::FloatList: return "float[]";
    case AttrKind::Shape: return "shape";
    case AttrKind::Tensor: return "number|number[]";
    case AttrKind::Enum: return "enum";
    case AttrKind::Object: return "object";
    case AttrKind::Json: return "any";
  }
  return "?";
}

std::string_view pattern_name(OpPattern p) {
  switch (p) {
    case OpPattern::unset: return "unset";
    case OpPattern::source: return "source";
    case OpPattern::elementwise: return "elementwise";
    case OpPattern::broadcast: return "broadcast";
    case OpPattern::reduction: return "reduction";
    case OpPattern::contraction: return "contraction";
    case OpPattern::data_movement: return "data movement";
    case OpPattern::opaque: return "opaque";
  }
  return "?";
}

int64_t multiply_adds(const Graph& g, const Node& n, int64_t batch) {
  const OpDef* def = OpRegistry::get().find(n.op);
  int64_t total = 0;
  if (def && def->gemms)
    for (const GemmShape& s : def->gemms(g, n, batch)) total += s.multiply_adds();
  return total;
}

OpRegistry& OpRegistry::get() {
  static OpRegistry* reg = [] {
    auto* r = new OpRegistry;
    register_source_family(*r);
    register_elementwise_family(*r);
    register_math_family(*r);
    register_movement_family(*r);
    register_scan_family(*r);
    register_avgpool_family(*r);
    register_conv_forms_family(*r);
    register_gather_elements_family(*r);
    register_matmul_family(*r);
    register_reduce_family(*r);
    register_layout_family(*r);
    register_conv_family(*r);
    register_pool_family(*r);
    register_index_family(*r);
    register_activation_family(*r);
    register_loss_family(*r);
    register_normalization_family(*r);
    register_random_family(*r);
    register_distributed_family(*r);
    return r;
  }();
  return *reg;
}

OpDef& OpRegistry::add(OpDef def) {
  if (find(def.name)) throw std::logic_error("op registered twice: " + def.name);
  ops_.push_back(std::move(def));
  return ops_.back();
}

const OpDef* OpRegistry::find(std::string_view name) const {
  for (auto& d : ops_) if (d.name == name) return &d;
  return nullptr;
}

OpDef* OpRegistry::find_mut(std::string_view name) {
  for (auto& d : ops_) if (d.name == name) return &d;
  return nullptr;
}

std::vector<std::string> OpRegistry::names() const {
  std::vector<std::string> out;
  for (auto& d : ops_) out.push_back(d.name);
  return out;
}

static bool finite_number(const nlohmann::json& v) {
  return v.is_number() && std::isfinite(v.get<double>());
}

// Integers past int64 would wrap when read as int64_t (2^64 - 1 reads as -1).
static bool beyond_int64(const nlohmann::json& v) {
  return v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX);
}

// Returns an empty string when `v` fits `spec`, else what is wrong.
static std::string check_value(const AttrSpec& spec, const nlohmann::json& v) {
  auto range = [&](double x) -> std::string {
    if (x < spec.min || x > spec.max) {
      std::string lo = spec.min > -1e299 ? std::to_string(static_cast<long long>(spec.min)) : "-inf";
      std::string hi = spec.max < 1e299 ? std::to_string(static_cast<long long>(spec.max)) : "inf";
      if (spec.kind == AttrKind::Float || spec.kind == AttrKind::FloatList) {
        lo = spec.min > -1e299 ? nlohmann::json(spec.min).dump() : "-inf";
        hi = spec.max < 1e299 ? nlohmann::json(spec.max).dump() : "inf";
      }
      bool integral = spec.kind == AttrKind::Int || spec.kind == AttrKind::IntList;
      std::string shown = integral ? std::to_string(static_cast<long long>(x)) : nlohmann::json(x).dump();
      return "value " + shown + " is out of range [" + lo + ", " + hi + "]";
    }
    return "";
  };
  switch (spec.kind) {
    case AttrKind::Int:
      if (!v.is_number_integer()) return "expected an integer, got " + v.dump();
      if (beyond_int64(v)) return "value " + v.dump() + " is too large";
      return range(v.get<double>());
    case AttrKind::Float:
      if (!v.is_number()) return "expected a number, got " + v.dump();
      if (!finite_number(v)) return "must be finite";
      return range(v.get<double>());
    case AttrKind::Bool:
      return v.is_boolean() ? "" : "expected true or false, got " + v.dump();
    case AttrKind::String:
      return v.is_string() ? "" : "expected a string, got " + v.dump();
    case AttrKind::Enum:
      if (!v.is_string() || std::find(spec.choices.begin(), spec.choices.end(), v.get<std::string>()) == spec.choices.end()) {
        std::string c;
        for (auto& s : spec.choices) c += (c.empty() ? "" : ", ") + s;
        std::string msg = "expected one of " + c + ", got " + v.dump();
        if (v.is_string()) {
          std::string hint = closest_name(v.get<std::string>(), spec.choices);
          if (!hint.empty()) msg += " (did you mean '" + hint + "'?)";
        }
        return msg;
      }
      return "";
    case AttrKind::IntList:
    case AttrKind::Shape:
      if (!v.is_array()) return "expected a list of integers, got " + v.dump();
      for (auto& e : v) {
        if (!e.is_number_integer()) return "expected a list of integers, got " + v.dump();
        if (beyond_int64(e)) return "value " + e.dump() + " is too large";
        if (spec.kind == AttrKind::Shape && e.get<int64_t>() < -1) return "dimension " + e.dump() + " is negative";
        if (spec.kind == AttrKind::Shape && e.get<int64_t>() == 0) return "dimension 0 is not allowed";
        if (spec.kind == AttrKind::Shape && e.get<int64_t>() > (int64_t{1} << 31))
          return "dimension " + e.dump() + " is absurdly large";
        if (spec.kind == AttrKind::IntList) {
          auto r = range(e.get<double>());
          if (!r.empty()) return r;
        }
      }
      return "";
    case AttrKind::FloatList:
      if (!v.is_array()) return "expected a list of numbers, got " + v.dump();
      for (auto& e : v) if (!finite_number(e)) return "expected finite numbers, got " + e.dump();
      return "";
    case AttrKind::Tensor:
      if (v.is_number()) return finite_number(v) ? "" : "constant is not finite";
      if (!v.is_array()) return "expected a number or a list of numbers, got " + v.dump();
      for (auto& e : v) if (!finite_number(e)) return "constant holds a non-finite or non-number value " + e.dump();
      return "";
    case AttrKind::Object:
      return v.is_object() ? "" : "expected an object, got " + v.dump();
    case AttrKind::Json:
      return "";  // the op checks it itself
  }
  return "";
}

Attrs check_attrs(const OpDef& def, const Attrs& attrs) { return check_attrs(def.name, def.attrs, attrs); }

Attrs check_attrs(const std::string& what, const std::vector<AttrSpec>& specs, const Attrs& attrs) {
  if (!attrs.is_object()) throw OpError("attributes of " + what + " must be a JSON object");
  Attrs out = Attrs::object();
  std::vector<std::pair<std::string, std::string>> problems;
  for (auto& spec : specs) {
    auto it = attrs.find(spec.name);
    if (it == attrs.end()) {
      if (spec.required) problems.push_back({spec.name, "missing required attribute '" + spec.name + "' (" + spec.doc + ")"});
      else if (!spec.default_value.is_null()) out[spec.name] = spec.default_value;
      continue;
    }
    std::string why = check_value(spec, *it);
    if (!why.empty()) problems.push_back({spec.name, "attribute '" + spec.name + "': " + why});
    else out[spec.name] = *it;
  }
  std::vector<std::string> known;
  for (auto& s : specs) known.push_back(s.name);
  for (auto& [k, v] : attrs.items()) {
    if (std::find(known.begin(), known.end(), k) != known.end()) continue;
    std::string hint = closest_name(k, known);
    problems.push_back({k, "unknown attribute '" + k + "' for " + what + (hint.empty() ? "" : " (did you mean '" + hint + "'?)")});
  }
  if (!problems.empty()) {
    std::string msg = problems[0].second;
    for (size_t i = 1; i < problems.size(); ++i) msg += "; " + problems[i].second;
    OpError e(msg);
    e.attr_problems = std::move(problems);
    throw e;
  }
  return out;
}

static size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t sub = prev[j - 1] + (std::tolower(a[i - 1]) == std::tolower(b[j - 1]) ? 0 : 1);
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, sub});
    }
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

std::string closest_name(std::string_view name, const std::vector<std::string>& candidates) {
  std::string best;
  size_t best_d = std::max<size_t>(2, name.size() / 3) + 1;
  for (auto& c : candidates) {
    size_t d = edit_distance(name, c);
    if (d < best_d) best_d = d, best = c;
  }
  return best;
}

std::optional<double> uniform_value(const Node& n) {
  if (n.op != "constant") return std::nullopt;
  const auto& v = n.attrs.at("value");
  if (v.is_number()) return v.get<double>();
  if (!v.is_array() || v.empty()) return std::nullopt;
  const double first = v[0].get<double>();
  for (const auto& e : v)
    if (e.get<double>() != first) return std::nullopt;
  return first;
}

std::optional<int64_t> view_offset(const Graph& g, NodeId id) {
  const Node& n = g.node(id);
  const OpDef* def = OpRegistry::get().find(n.op);
  if (!def || !def->view || n.inputs.size() != 1) return std::nullopt;
  return def->view(n, g.node(n.inputs[0]).type);
}

bool zero_above_diagonal(const Graph& g, NodeId id) {
  const Node& n = g.node(id);
  const OpDef* def = OpRegistry::get().find(n.op);
  return def && def->zero_above_diagonal && n.type.rank() >= 2 && def->zero_above_diagonal(g, n);
}

Shape broadcast_shapes(const Shape& a, const Shape& b) {
  size_t n = std::max(a.size(), b.size());
  Shape out(n);
  for (size_t i = 0; i < n; ++i) {
    int64_t da = i < n - a.size() ? 1 : a[i - (n - a.size())];
    int64_t db = i < n - b.size() ? 1 : b[i - (n - b.size())];
    if (da == db) out[i] = da;
    else if (da == 1) out[i] = db;
    else if (db == 1) out[i] = da;
    else
      throw OpError("shapes " + shape_str(a) + " and " + shape_str(b) + " do not broadcast: dimension " +
                    std::to_string(i) + " is " + (da == kOpenDim ? "?" : std::to_string(da)) + " vs " +
                    (db == kOpenDim ? "?" : std::to_string(db)));
  }
  return out;
}

std::vector<int> mixes_along_nothing(const Graph&, const Node&) { return {}; }

std::vector<int> every_axis(int rank) {
  std::vector<int> axes(static_cast<size_t>(std::max(rank, 0)));
  std::iota(axes.begin(), axes.end(), 0);
  return axes;
}

std::function<std::vector<int>(const Graph&, const Node&)> mixes_along_attr(const char* attr) {
  return [attr](const Graph& g, const Node& n) {
    const int rank = g.node(n.inputs.at(0)).type.rank();
    std::vector<int> axes;
    const nlohmann::json& v = n.attrs.at(attr);
    if (v.is_array()) {
      for (auto& a : v) axes.push_back(normalize_axis(a.get<int64_t>(), std::max(rank, 1)));
      if (axes.empty()) axes = every_axis(rank);
    } else {
      axes.push_back(normalize_axis(v.get<int64_t>(), std::max(rank, 1)));
    }
    return axes;
  };
}

std::vector<int> mixes_along_reshape(const Graph& g, const Node& n) {
  auto batch_leads = [](const Shape& s) {
    for (int64_t d : s) {
      if (d == kOpenDim) return true;
      if (d != 1) return false;
    }
    return true;  // no batch dimension
  };
  const Shape& in = g.node(n.inputs.at(0)).type.shape;
  if (batch_leads(in) && batch_leads(n.type.shape)) return {};
  return every_axis(static_cast<int>(in.size()));
}

std::vector<int> mixes_along_all_but_batch(const Graph& g, const Node& n) {
  std::vector<int> axes;
  for (int a = 1; a < g.node(n.inputs.at(0)).type.rank(); ++a) axes.push_back(a);
  return axes;
}

int normalize_axis(int64_t axis, int rank) {
  int64_t a = axis < 0 ? axis + rank : axis;
  if (a < 0 || a >= rank)
    throw OpError("axis " + std::to_string(axis) + " is out of range for rank " + std::to_string(rank));
  return static_cast<int>(a);
}

}  // namespace kiln
