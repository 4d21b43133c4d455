// kiln run: one forward pass of a graph through the reference interpreter,
// on inputs read from .npy files, with freshly drawn or saved params.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <map>
#include <sstream>

#include "compiler/interp/interpreter.h"
#include "tools/kiln/command.h"

namespace kiln::cli {

Graph load_graph_or_fail(const std::string& path);

namespace {

// A small private .npy reader/writer (format 1.0-3.0, little-endian, C order),
// kept here until runtime/data/npy.h exists; the lead swaps it for the runtime's.
namespace npy_io {

struct Array {
  std::string descr;      // numpy dtype string, e.g. "<f4"
  Shape shape;
  std::vector<double> data;
};

// The dtype class of a numpy descr: 'f' float, 'i' signed, 'u' unsigned, 'b' bool.
char kind_of(const std::string& descr) { return descr.size() >= 2 ? descr[1] : '?'; }

std::string describe(const std::string& descr) {
  static const std::map<std::string, std::string> names = {
      {"<f4", "float32"}, {"<f8", "float64"}, {"<i4", "int32"}, {"<i8", "int64"}, {"|u1", "uint8"},
      {"|i1", "int8"},    {"<i2", "int16"},   {"<u2", "uint16"}, {"|b1", "bool"}};
  auto it = names.find(descr);
  return it == names.end() ? descr : it->second;
}

// Value of `key` in the header dict ("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }").
std::string header_field(const std::string& header, const std::string& key, const std::string& file) {
  auto bad = [&] { return InputError(file + ": malformed .npy header (its '" + key + "' entry): " + header); };
  size_t at = header.find("'" + key + "'");
  if (at == std::string::npos) throw InputError(file + ": .npy header has no '" + key + "' entry");
  at = header.find(':', at);
  size_t start = at == std::string::npos ? at : header.find_first_not_of(' ', at + 1);
  if (start == std::string::npos) throw bad();
  char open = header[start];
  size_t end = open == '(' ? header.find(')', start) : open == '\'' ? header.find('\'', start + 1)
                                                                     : header.find_first_of(",}", start);
  if (end == std::string::npos) throw bad();
  return open == '(' || open == '\'' ? header.substr(start + 1, end - start - 1) : header.substr(start, end - start);
}

Array read(const std::string& path) {
  std::string bytes = read_file(path);
  if (bytes.size() < 10 || bytes.compare(0, 6, "\x93NUMPY") != 0)
    throw InputError(path + ": not a .npy file (no \\x93NUMPY magic)");
  int major = static_cast<unsigned char>(bytes[6]);
  size_t header_len, offset;
  if (major == 1) {
    header_len = static_cast<unsigned char>(bytes[8]) | static_cast<size_t>(static_cast<unsigned char>(bytes[9])) << 8;
    offset = 10;
  } else if (major == 2 || major == 3) {
    if (bytes.size() < 12) throw InputError(path + ": truncated .npy header");
    header_len = 0;
    for (int i = 0; i < 4; ++i) header_len |= static_cast<size_t>(static_cast<unsigned char>(bytes[8 + i])) << (8 * i);
    offset = 12;
  } else {
    throw InputError(path + ": unsupported .npy format version " + std::to_string(major));
  }
  if (bytes.size() < offset + header_len) throw InputError(path + ": truncated .npy header");
  std::string header = bytes.substr(offset, header_len);
  Array a;
  a.descr = header_field(header, "descr", path);
  if (header_field(header, "fortran_order", path) != "False")
    throw InputError(path + ": Fortran-order arrays are not supported (save it with np.ascontiguousarray)");
  std::stringstream dims(header_field(header, "shape", path));
  for (std::string d; std::getline(dims, d, ',');) {
    if (d.find_first_not_of(' ') == std::string::npos) continue;
    size_t used = 0;
    long long n = -1;
    try {
      n = std::stoll(d, &used);
    } catch (const std::exception&) {
    }
    if (n < 0 || d.find_first_not_of(' ', used) != std::string::npos)
      throw InputError(path + ": malformed .npy shape '(" + header_field(header, "shape", path) + ")'");
    a.shape.push_back(n);
  }
  static const std::map<std::string, size_t> sizes = {{"<f4", 4}, {"<f8", 8}, {"<i4", 4}, {"<i8", 8}, {"|u1", 1},
                                                       {"|i1", 1}, {"<i2", 2}, {"<u2", 2}, {"|b1", 1}};
  auto size_it = sizes.find(a.descr);
  if (size_it == sizes.end())
    throw InputError(path + ": unsupported .npy dtype '" + a.descr +
                     "' (use float32, float64, int32, int64, int16, uint16, int8, uint8 or bool, little-endian)");
  size_t item = size_it->second, count = static_cast<size_t>(numel(a.shape));
  const char* p = bytes.data() + offset + header_len;
  if (bytes.size() - offset - header_len != count * item)
    throw InputError(path + ": holds " + std::to_string(bytes.size() - offset - header_len) + " data bytes, but shape " +
                     shape_str(a.shape) + " of " + describe(a.descr) + " needs " + std::to_string(count * item));
  a.data.resize(count);
  for (size_t i = 0; i < count; ++i, p += item) {
    auto load = [&](auto v) { std::memcpy(&v, p, sizeof v); return static_cast<double>(v); };
    const std::string& d = a.descr;
    a.data[i] = d == "<f4" ? load(float{}) : d == "<f8" ? load(double{}) : d == "<i4" ? load(int32_t{})
              : d == "<i8" ? load(int64_t{}) : d == "|u1" ? load(uint8_t{}) : d == "|i1" ? load(int8_t{})
              : d == "<i2" ? load(int16_t{}) : d == "<u2" ? load(uint16_t{}) : load(uint8_t{}) != 0;
  }
  return a;
}

void write(const std::string& path, DType dtype, const Shape& shape, const std::vector<double>& data) {
  std::string descr = dtype == DType::f32 ? "<f4" : dtype == DType::f64 ? "<f8" : dtype == DType::i32 ? "<i4"
                      : dtype == DType::i64 ? "<i8" : "|b1";
  std::string dims;
  for (size_t i = 0; i < shape.size(); ++i) dims += std::to_string(shape[i]) + (shape.size() == 1 || i + 1 < shape.size() ? "," : "");
  std::string header = "{'descr': '" + descr + "', 'fortran_order': False, 'shape': (" + dims + "), }";
  // Magic + version + length + header + '\n' is padded to a multiple of 64 bytes.
  header.append(63 - (10 + header.size()) % 64, ' ');
  header += '\n';
  std::ofstream out(path, std::ios::binary);
  if (!out) throw InputError(path + ": cannot write (" + std::strerror(errno) + ")");
  out.write("\x93NUMPY\x01\x00", 8);
  uint16_t len = static_cast<uint16_t>(header.size());
  char len_bytes[2] = {static_cast<char>(len & 0xff), static_cast<char>(len >> 8)};
  out.write(len_bytes, 2);
  out << header;
  for (double v : data) {
    auto store = [&](auto x) { out.write(reinterpret_cast<const char*>(&x), sizeof x); };
    if (dtype == DType::f32) store(static_cast<float>(v));
    else if (dtype == DType::f64) store(v);
    else if (dtype == DType::i32) store(static_cast<int32_t>(v));
    else if (dtype == DType::i64) store(static_cast<int64_t>(v));
    else store(static_cast<uint8_t>(v != 0));
  }
  if (!out) throw InputError(path + ": write failed");
}

}  // namespace npy_io

// Does a numpy dtype fit a tensor dtype? Same class: float for float,
// integer (or bool) for integer, bool for bool.
bool fits(const std::string& descr, DType want) {
  char k = npy_io::kind_of(descr);
  if (is_float(want)) return k == 'f';
  if (want == DType::boolean) return k == 'b';
  return k == 'i' || k == 'u' || k == 'b';
}

// Reads a .npy file as the value for node `node_name` of graph g.
interp::Value read_value(const Graph& g, const std::string& node_name, const std::string& path) {
  const Node& n = g.node(g.find(node_name));
  npy_io::Array a = npy_io::read(path);
  if (!fits(a.descr, n.type.dtype))
    throw InputError(path + ": " + n.op + " '" + n.name + "' expects " + type_str(n.type) + ", the file holds " +
                     npy_io::describe(a.descr) + shape_str(a.shape));
  return interp::Value{n.type.dtype, a.shape, std::move(a.data)};
}

std::string file_name_of(const std::string& param) {
  std::string s = param;
  for (size_t at; (at = s.find('/')) != std::string::npos;) s.replace(at, 1, "__");
  return s + ".npy";
}

// "f32[] = 2.38" for a scalar; the first few values and the range otherwise.
std::string describe_value(const interp::Value& v, size_t count) {
  std::ostringstream os;
  os << std::setprecision(6) << type_str(TensorType{v.dtype, v.shape}) << " = ";
  if (v.shape.empty() && v.data.size() == 1) {
    os << v.data[0];
  } else {
    os << "[";
    for (size_t i = 0; i < std::min(count, v.data.size()); ++i) os << (i ? ", " : "") << v.data[i];
    if (v.data.size() > count) os << ", ...";
    os << "]";
    if (!v.data.empty())
      os << "  min " << *std::min_element(v.data.begin(), v.data.end()) << ", max "
         << *std::max_element(v.data.begin(), v.data.end());
  }
  if (!std::all_of(v.data.begin(), v.data.end(), [](double x) { return std::isfinite(x); }))
    os << "  (holds non-finite values)";
  return os.str();
}

struct RunOptions {
  std::string graph;
  std::vector<std::string> inputs;
  std::vector<std::string> fetch;
  std::string params_dir, output_dir;
  bool f64 = false;
  int64_t seed = -1;
};

void run_graph(const RunOptions& o) {
  Graph g = load_graph_or_fail(o.graph);
  std::map<std::string, interp::Value> feeds;
  std::map<std::string, std::string> file_of;  // node -> the file that fed it, for located errors
  for (const std::string& spec : o.inputs) {
    size_t eq = spec.find('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == spec.size())
      throw InputError("--input '" + spec + "': expected NAME=FILE.npy");
    std::string name = spec.substr(0, eq), path = spec.substr(eq + 1);
    NodeId id = g.find(name);
    if (id == kNoNode || g.node(id).op != "input") {
      std::string known;
      for (NodeId in : g.inputs()) known += (known.empty() ? "" : ", ") + g.node(in).name;
      throw InputError("--input " + name + ": graph '" + g.name + "' has no input named '" + name + "' (inputs: " +
                       known + ")");
    }
    feeds[name] = read_value(g, name, path);
    file_of[name] = path;
  }
  if (!o.params_dir.empty()) {
    if (!std::filesystem::is_directory(o.params_dir))
      throw InputError("--params " + o.params_dir + ": not a directory of NAME.npy files (one per param, '/' in a name written as '__')");
    for (NodeId id : g.params()) {
      std::string name = g.node(id).name;
      std::string path = (std::filesystem::path(o.params_dir) / file_name_of(name)).string();
      if (!std::filesystem::exists(path)) throw InputError(path + ": missing (the value of param '" + name + "')");
      feeds[name] = read_value(g, name, path);
      file_of[name] = path;
    }
  } else {
    auto drawn = o.seed >= 0 ? interp::init_params(g, static_cast<uint64_t>(o.seed)) : interp::init_params(g);
    feeds.insert(drawn.begin(), drawn.end());
  }

  // By default, every output whose inputs were all fed; name what the others need.
  std::vector<std::string> fetch = o.fetch;
  if (fetch.empty()) {
    for (auto& [out, node] : g.outputs) {
      std::string missing;
      for (auto& in : interp::inputs_needed(g, {out}))
        if (!feeds.count(in)) missing += (missing.empty() ? "" : ", ") + in;
      if (missing.empty()) fetch.push_back(out);
      else std::cout << "skipping output '" << out << "': it needs input " << missing << " (--input NAME=FILE.npy)\n";
    }
    if (fetch.empty()) throw InputError("no output of graph '" + g.name + "' can be computed from the inputs given");
  }

  std::map<std::string, interp::Value> results;
  try {
    interp::Interpreter run(g, o.f64 ? interp::Precision::f64 : interp::Precision::f32);
    results = run.run(feeds, fetch);
  } catch (const std::runtime_error& e) {
    std::string msg = e.what();
    for (auto& [node, path] : file_of)  // a feed problem ("input 'x': ..."): name the file it came from
      if (msg.rfind("input '" + node + "':", 0) == 0 || msg.rfind("param '" + node + "':", 0) == 0) {
        msg = path + ": " + msg;
        break;
      }
    throw InputError(msg);
  }
  if (!o.output_dir.empty()) std::filesystem::create_directories(o.output_dir);
  for (const std::string& name : fetch) {
    interp::Value& v = results.at(name);
    if (o.f64 && v.dtype == DType::f32) v.dtype = DType::f64;  // keep the unrounded values
    std::cout << name << ": " << describe_value(v, 6) << "\n";
    if (!o.output_dir.empty()) {
      std::string path = (std::filesystem::path(o.output_dir) / file_name_of(name)).string();
      npy_io::write(path, v.dtype, v.shape, v.data);
      std::cout << "  wrote " << path << "\n";
    }
  }
}

}  // namespace

static RegisterCommand run_cmd(30, [](CLI::App& app) {
  auto* sub = app.add_subcommand("run", "Run a forward pass through the reference interpreter on inputs from .npy files");
  auto o = std::make_shared<RunOptions>();
  sub->add_option("graph", o->graph, "graph JSON file")->required()->check(CLI::ExistingFile);
  sub->add_option("--input,-i", o->inputs, "NAME=FILE.npy for each input the outputs need");
  sub->add_option("--fetch", o->fetch, "outputs or node names to compute (default: every output whose inputs are given)");
  sub->add_option("--params", o->params_dir,
                  "directory of NAME.npy param values ('/' in a name written as '__'); default: drawn from the initializers");
  sub->add_option("--output,-o", o->output_dir, "write NAME.npy for each computed output into this directory");
  sub->add_flag("--f64", o->f64, "compute in f64 (no rounding to float after each op; f32 outputs written as float64)");
  sub->add_option("--seed", o->seed, "re-derive every param's initializer seed from this graph seed")->check(CLI::NonNegativeNumber);
  sub->callback([o] { run_graph(*o); });
});

}  // namespace kiln::cli
