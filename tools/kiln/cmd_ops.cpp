// kiln ops: the op set and the layers, from the registry (as text, as the
// markdown table README carries, or as JSON for tools/gen_op_docs.py, which
// writes graphs/schema from it).
#include <cstdio>
#include <iostream>

#include "compiler/frontend/layers.h"
#include "compiler/ops/registry.h"
#include "tools/kiln/command.h"

namespace kiln::cli {

namespace {

// primitive, composite, or by mode (a training and an inference form, chosen per entry point).
std::string kind_of(const OpDef& d) { return d.composite() ? "composite" : d.by_mode ? "by mode" : "primitive"; }

std::string number(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

// What passes know of an op: its pattern and the properties it declares.
std::string op_facts(const OpDef& d) {
  std::string s(pattern_name(d.pattern));
  auto add = [&](const std::string& fact) { s += "; " + fact; };
  const OpAlgebra& a = d.algebra;
  if (!d.pure) add("impure");
  if (a.commutative) add("commutative");
  if (a.associative) add("associative");
  if (a.left_identity && a.right_identity && *a.left_identity == *a.right_identity) add("identity " + number(*a.left_identity));
  else if (a.right_identity) add("right identity " + number(*a.right_identity));
  if (a.involution) add("involution");
  if (d.kinks == Kinks::gradient_steps) add("steps in its gradient");
  if (d.kinks == Kinks::value_steps) add("steps in its value");
  if (d.no_grad) add("no gradient");
  if (d.activation) add("activation");
  if (!d.interface) add(std::to_string(d.samples.size()) + " samples");
  return s;
}

std::string attrs_text(const std::vector<AttrSpec>& specs) {
  std::string attrs;
  for (auto& a : specs) {
    attrs += (attrs.empty() ? "" : ", ") + a.name + ":" + std::string(attr_kind_name(a.kind));
    if (a.kind == AttrKind::Enum) {
      std::string c;
      for (auto& s : a.choices) c += (c.empty() ? "" : "|") + s;
      attrs += "(" + c + ")";
    }
    if (!a.required && !a.default_value.is_null()) attrs += "=" + a.default_value.dump();
  }
  return attrs.empty() ? "-" : attrs;
}

std::string inputs_text(const OpDef& d) {
  std::string ins;
  for (size_t i = 0; i < d.inputs.size(); ++i) ins += (i ? ", " : "") + d.inputs[i];
  if (d.variadic) ins += "...";
  return ins.empty() ? "-" : ins;
}

nlohmann::json attrs_json(const std::vector<AttrSpec>& specs) {
  nlohmann::json out = nlohmann::json::array();
  for (auto& a : specs) {
    nlohmann::json j = {{"name", a.name}, {"kind", attr_kind_name(a.kind)}, {"required", a.required}, {"doc", a.doc}};
    if (!a.default_value.is_null()) j["default"] = a.default_value;
    if (!a.choices.empty()) j["choices"] = a.choices;
    if (a.min > -1e299) j["min"] = a.min;
    if (a.max < 1e299) j["max"] = a.max;
    out.push_back(j);
  }
  return out;
}

nlohmann::json registry_json() {
  nlohmann::json ops = nlohmann::json::array(), layers = nlohmann::json::array();
  for (const OpDef& d : OpRegistry::get().all())
    ops.push_back({{"name", d.name}, {"family", d.family}, {"composite", d.composite()}, {"by_mode", static_cast<bool>(d.by_mode)},
                   {"pattern", pattern_name(d.pattern)}, {"summary", d.summary}, {"inputs", d.inputs},
                   {"variadic", d.variadic}, {"interface", d.interface}, {"attrs", attrs_json(d.attrs)},
                   {"shape_rule", d.shape_rule}});
  for (const LayerDef& l : layer_defs())
    layers.push_back({{"name", l.name}, {"summary", l.summary}, {"attrs", attrs_json(l.attrs)}, {"max_inputs", l.max_inputs}});
  return {{"ops", ops}, {"layers", layers}, {"activations", activation_names()}};
}

// A table cell: "|" (enum choices, shape rules) would end the cell.
std::string cell(const std::string& text) {
  std::string out;
  for (char ch : text) out += ch == '|' ? std::string("\\|") : std::string(1, ch);
  return out;
}

// The table README carries between its "kiln ops --markdown" markers.
void print_markdown() {
  std::cout << "| op | kind | pattern | inputs | attributes | shape |\n|---|---|---|---|---|---|\n";
  for (const OpDef& d : OpRegistry::get().all())
    std::cout << "| `" << d.name << "` | " << kind_of(d) << " | "
              << pattern_name(d.pattern) << " | " << inputs_text(d) << " | " << cell(attrs_text(d.attrs)) << " | "
              << cell(d.shape_rule) << " |\n";
  std::cout << "\n| layer | what it is | attributes |\n|---|---|---|\n";
  for (const LayerDef& l : layer_defs())
    std::cout << "| `" << l.name << "` | " << cell(l.summary) << " | " << cell(attrs_text(l.attrs)) << " |\n";
  std::cout << "\nActivations (a layer's `activation`, by name or as `{\"kind\": name, ...its attributes}`):";
  for (const std::string& a : activation_names()) std::cout << " `" << a << "`";
  std::cout << "\n";
}

}  // namespace

static RegisterCommand ops_cmd(12, [](CLI::App& app) {
  auto* sub = app.add_subcommand("ops", "List every op and layer: inputs, attributes, shape rule (generated from the registry)");
  auto markdown = std::make_shared<bool>(false), json = std::make_shared<bool>(false);
  sub->add_flag("--markdown", *markdown, "print the markdown tables README carries");
  sub->add_flag("--json", *json, "print the registry as JSON (tools/gen_op_docs.py writes graphs/schema from it)");
  sub->callback([markdown, json] {
    if (*json) {
      std::cout << registry_json().dump(1) << "\n";
      return;
    }
    if (*markdown) return print_markdown();
    std::cout << "Ops (" << OpRegistry::get().all().size() << "):\n\n";
    for (const OpDef& d : OpRegistry::get().all())
      std::cout << d.name << "  [" << kind_of(d) << ", " << d.family << "]  "
                << d.summary << "\n    inputs: " << inputs_text(d) << "\n    attrs:  " << attrs_text(d.attrs)
                << "\n    shape:  " << d.shape_rule << "\n    is:     " << op_facts(d) << "\n";
    std::cout << "\nLayers (" << layer_defs().size() << "; sugar that expands to ops and creates params):\n\n";
    for (const LayerDef& l : layer_defs())
      std::cout << l.name << "  " << l.summary << "\n    attrs:  " << attrs_text(l.attrs) << "\n";
    std::cout << "\nActivations:";
    for (const std::string& a : activation_names()) std::cout << " " << a;
    std::cout << "\n";
  });
});

}  // namespace kiln::cli
