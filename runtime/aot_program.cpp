#include "runtime/aot_program.h"

#include <cmath>
#include <cstring>
#include <map>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "runtime/init/initializers.h"

namespace kiln {

static TensorInfo tensor_info(const kiln_aot_tensor& t) {
  TensorInfo out;
  out.name = t.name;
  out.type = static_cast<ElemType>(t.type);
  out.shape.assign(t.shape, t.shape + t.rank);
  out.offset = t.offset;
  out.state = t.state != 0;
  return out;
}

ProgramInfo aot_program_info(const kiln_aot_program* desc) {
  if (!desc) throw std::runtime_error("no AOT program descriptor (null)");
  if (desc->abi_version != KILN_AOT_ABI_VERSION)
    throw std::runtime_error(std::string("AOT program '") + desc->name + "' has ABI version " +
                             std::to_string(desc->abi_version) + ", this runtime reads " +
                             std::to_string(KILN_AOT_ABI_VERSION) + ": recompile it with this kiln");
  ProgramInfo info;
  info.name = desc->name;
  info.max_batch = desc->max_batch;
  info.arena_bytes = desc->arena_bytes;
  info.param_bytes = desc->param_bytes;
  info.state_bytes = desc->state_bytes;
  for (int32_t i = 0; i < desc->num_persistent; ++i) info.persistent.push_back(tensor_info(desc->persistent[i]));
  for (int32_t i = 0; i < desc->num_entries; ++i) {
    const kiln_aot_entry& e = desc->entries[i];
    EntryInfo ei;
    ei.name = e.name;
    ei.fn = e.fn;
    for (int32_t k = 0; k < e.num_inputs; ++k) ei.inputs.push_back(tensor_info(e.inputs[k]));
    for (int32_t k = 0; k < e.num_outputs; ++k) ei.outputs.push_back(tensor_info(e.outputs[k]));
    info.entries.push_back(std::move(ei));
  }
  return info;  // no `code` to keep alive: the object is linked into the executable
}

// Stores drawn doubles as `type`, the way the compiler's to_bytes does.
static Tensor to_tensor(const std::vector<double>& values, ElemType type, const std::vector<int64_t>& shape) {
  Tensor t(type, shape);
  auto* dst = static_cast<uint8_t*>(t.raw());
  for (size_t i = 0; i < values.size(); ++i) {
    double x = values[i];
    switch (type) {
      case ElemType::f32: { float f = static_cast<float>(x); std::memcpy(dst + 4 * i, &f, 4); break; }
      case ElemType::f64: std::memcpy(dst + 8 * i, &x, 8); break;
      case ElemType::i32: { int32_t n = static_cast<int32_t>(std::trunc(x)); std::memcpy(dst + 4 * i, &n, 4); break; }
      case ElemType::i64: { int64_t n = static_cast<int64_t>(std::trunc(x)); std::memcpy(dst + 8 * i, &n, 8); break; }
      case ElemType::boolean: dst[i] = x != 0; break;
      case ElemType::u8: dst[i] = static_cast<uint8_t>(x); break;
    }
  }
  return t;
}

std::vector<Tensor> aot_initial_values(const kiln_aot_program* desc, std::optional<uint64_t> seed) {
  ProgramInfo info = aot_program_info(desc);
  const EntryInfo* init = nullptr;
  for (auto& e : info.entries)
    if (e.name == "init") init = &e;
  if (!init) throw std::runtime_error("AOT program '" + info.name + "' has no init entry");
  nlohmann::json j = nlohmann::json::parse(desc->init_json ? desc->init_json : "{}", nullptr, false);
  if (j.is_discarded() || !j.contains("inputs"))
    throw std::runtime_error("AOT program '" + info.name + "': its init description is not valid JSON");
  if (!seed && j.contains("seed") && j["seed"].is_number_unsigned()) seed = j["seed"].get<uint64_t>();
  std::map<std::string, nlohmann::json> rules;
  for (auto& in : j["inputs"]) rules[in.at("name").get<std::string>()] = in.at("init");

  std::vector<Tensor> out;
  for (const TensorInfo& t : init->inputs) {
    auto it = rules.find(t.name);
    if (it == rules.end()) throw std::runtime_error("AOT program '" + info.name + "': no initializer for '" + t.name + "'");
    // A state that starts as a copy of a param draws that param's values again (same spec, same seed).
    const bool copy = it->second.value("kind", "zeros") == "copy";
    nlohmann::json spec = copy ? it->second.at("init") : it->second;
    const std::string seed_name = copy ? it->second.at("of").get<std::string>() : t.name;
    if (seed) spec["seed"] = init::param_seed(*seed, seed_name);
    std::vector<double> v = init::draw_initial_values(spec, t.shape);
    if (t.type == ElemType::f32)  // as the interpreter rounds its draws
      for (double& x : v) x = static_cast<double>(static_cast<float>(x));
    out.push_back(to_tensor(v, t.type, t.shape));
  }
  return out;
}

void aot_initialize(Program& program, const kiln_aot_program* desc, std::optional<uint64_t> seed) {
  std::vector<Tensor> values = aot_initial_values(desc, seed);
  std::vector<const void*> ptrs;
  for (auto& v : values) ptrs.push_back(v.raw());
  program.run("init", 1, ptrs, {});
}

}  // namespace kiln
