#include "runtime/train/param_export.h"

#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>

#include "runtime/data/npy.h"
#include "runtime/file_io.h"

namespace kiln::train {

std::string sanitize_file_name(const std::string& name) {
  std::string out;
  for (char c : name) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
    out += ok ? c : '_';
  }
  if (out.empty() || out[0] == '.') out = "_" + out;  // no hidden files, no "..", no empty name
  return out;
}

void export_params_npy(const std::string& dir, const std::vector<NamedTensor>& params) {
  std::filesystem::create_directories(dir);
  nlohmann::json manifest = {{"format", "kiln.params/1"}, {"params", nlohmann::json::array()}};
  std::set<std::string> used;
  for (auto& p : params) {
    std::string base = sanitize_file_name(p.name), file = base + ".npy";
    for (int k = 2; used.count(file); ++k) file = base + "_" + std::to_string(k) + ".npy";
    used.insert(file);
    data::write_npy(dir + "/" + file, p.value);
    manifest["params"].push_back(
        {{"name", p.name}, {"file", file}, {"dtype", elem_type_name(p.value.dtype())}, {"shape", p.value.shape()}});
  }
  std::string text = manifest.dump(2) + "\n";
  write_file_atomic(dir + "/manifest.json", std::span(reinterpret_cast<const uint8_t*>(text.data()), text.size()));
}

std::vector<NamedTensor> import_params_npy(const std::string& dir) {
  const std::string mpath = dir + "/manifest.json";
  std::vector<uint8_t> raw = read_file_bytes(mpath);
  nlohmann::json m = nlohmann::json::parse(raw.begin(), raw.end(), nullptr, false);
  if (m.is_discarded()) fail_file(mpath, "not valid JSON");
  if (!m.is_object() || m.value("format", "") != "kiln.params/1" || !m.contains("params") || !m["params"].is_array())
    fail_file(mpath, "not a kiln parameter manifest (expects {\"format\": \"kiln.params/1\", \"params\": [...]})");
  std::vector<NamedTensor> out;
  std::set<std::string> names;
  for (size_t i = 0; i < m["params"].size(); ++i) {
    const auto& e = m["params"][i];
    const std::string where = "params[" + std::to_string(i) + "]";
    if (!e.is_object() || !e.contains("name") || !e["name"].is_string() || !e.contains("file") || !e["file"].is_string())
      fail_file(mpath, where + " needs string fields \"name\" and \"file\"");
    std::string name = e["name"], file = e["file"];
    if (file.find('/') != std::string::npos || file == ".." || file.empty())
      fail_file(mpath, where + ": file \"" + file + "\" must be a plain file name inside " + dir);
    if (!names.insert(name).second) fail_file(mpath, where + ": param '" + name + "' appears twice");
    std::string path = dir + "/" + file;
    Tensor t = data::read_npy(path);
    if (e.contains("dtype") && e["dtype"] != elem_type_name(t.dtype()))
      fail_file(path, "holds " + std::string(elem_type_name(t.dtype())) + " but the manifest says " + e["dtype"].dump());
    if (e.contains("shape") && e["shape"] != nlohmann::json(t.shape()))
      fail_file(path, "has shape " + shape_string(t.shape()) + " but the manifest says " + e["shape"].dump());
    out.push_back({name, std::move(t)});
  }
  return out;
}

}  // namespace kiln::train
