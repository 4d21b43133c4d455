// The ONNX importer: models built here with ONNX's protobuf classes, imported,
// read back by kiln's frontend and run; its errors; kiln import on the CLI.
#ifdef KILN_HAVE_ONNX
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>

#include "compiler/frontend/graph_json.h"
#include "compiler/frontend/onnx/onnx_import.h"
#include "onnx/onnx_pb.h"
#include "test_util.h"

using namespace kiln;
using kiln::test::run_kiln;
namespace fs = std::filesystem;
namespace ki = kiln::onnx;  // kiln's importer; ::onnx is ONNX's protobuf classes

namespace {

struct ModelBuilder {
  ::onnx::ModelProto m;
  explicit ModelBuilder(int64_t opset = 13) {
    m.set_ir_version(8);
    m.set_producer_name("kiln-test");
    auto* os = m.add_opset_import();
    os->set_domain("");
    os->set_version(opset);
    m.mutable_graph()->set_name("g");
  }
  void input(const std::string& name, std::vector<int64_t> shape, int elem = ::onnx::TensorProto::FLOAT,
             const std::string& batch = "") {
    auto* vi = m.mutable_graph()->add_input();
    vi->set_name(name);
    auto* tt = vi->mutable_type()->mutable_tensor_type();
    tt->set_elem_type(elem);
    auto* sh = tt->mutable_shape();
    if (!batch.empty()) sh->add_dim()->set_dim_param(batch);
    for (int64_t d : shape) sh->add_dim()->set_dim_value(d);
  }
  void output(const std::string& name) {
    auto* vi = m.mutable_graph()->add_output();
    vi->set_name(name);
    auto* tt = vi->mutable_type()->mutable_tensor_type();
    tt->set_elem_type(::onnx::TensorProto::FLOAT);
    tt->mutable_shape();  // the checker wants one; its dims are the importer's to infer
  }
  ::onnx::NodeProto* node(const std::string& op, std::vector<std::string> in, std::vector<std::string> out,
                          const std::string& name = "") {
    auto* n = m.mutable_graph()->add_node();
    n->set_op_type(op);
    n->set_name(name);
    for (auto& i : in) n->add_input(i);
    for (auto& o : out) n->add_output(o);
    return n;
  }
  void initializer(const std::string& name, std::vector<int64_t> dims, std::vector<float> f) {
    auto* t = m.mutable_graph()->add_initializer();
    t->set_name(name);
    t->set_data_type(::onnx::TensorProto::FLOAT);
    for (int64_t d : dims) t->add_dims(d);
    for (float x : f) t->add_float_data(x);
  }
  void int_initializer(const std::string& name, std::vector<int64_t> values) {
    auto* t = m.mutable_graph()->add_initializer();
    t->set_name(name);
    t->set_data_type(::onnx::TensorProto::INT64);
    t->add_dims(static_cast<int64_t>(values.size()));
    for (int64_t v : values) t->add_int64_data(v);
  }
  std::string bytes() const { return m.SerializeAsString(); }
};

void set_ints(::onnx::NodeProto* n, const std::string& name, std::vector<int64_t> v) {
  auto* a = n->add_attribute();
  a->set_name(name);
  a->set_type(::onnx::AttributeProto::INTS);
  for (int64_t x : v) a->add_ints(x);
}

interp::Value f32(Shape s, std::vector<double> d) { return {DType::f32, std::move(s), std::move(d)}; }

ki::ImportError import_error(const std::string& bytes, const ki::ImportOptions& o = {}) {
  try {
    ki::import_model(bytes, "m.onnx", o);
  } catch (const ki::ImportError& e) {
    return e;
  }
  FAIL("the model imported");
  return ki::ImportError("", {});
}

}  // namespace

TEST_CASE("onnx import: a Gemm over a symbolic batch runs in kiln with its initializers as params") {
  ModelBuilder b;
  b.input("x", {3}, ::onnx::TensorProto::FLOAT, "N");
  b.initializer("W", {2, 3}, {1, 2, 3, 4, 5, 6});
  b.initializer("B", {2}, {0.5, -1});
  auto* g = b.node("Gemm", {"x", "W", "B"}, {"y"}, "fc");
  auto* tb = g->add_attribute();
  tb->set_name("transB");
  tb->set_type(::onnx::AttributeProto::INT);
  tb->set_i(1);
  g->set_doc_string("the classifier");
  b.output("y");
  ki::ImportedModel im = ki::import_model(b.bytes(), "m.onnx");
  CHECK(im.graph["inputs"]["x"]["shape"] == nlohmann::json({-1, 3}));  // the symbolic first dimension is the batch
  REQUIRE(im.params.size() == 2);
  CHECK(im.params.at("W").shape == Shape{2, 3});
  Graph graph = parse_graph(im.graph.dump(), "imported");
  // Every kiln node of the Gemm names it, with its doc string.
  bool described = false;
  for (auto& n : im.graph["nodes"])
    described = described || n.value("description", "").find("ONNX Gemm node 'fc': the classifier") != std::string::npos;
  CHECK(described);
  std::map<std::string, interp::Value> feeds = im.params;
  feeds["x"] = f32({2, 3}, {1, 0, -1, 2, 2, 2});
  auto out = interp::Interpreter(graph).run(feeds);
  // y = x W^T + B: [1-3, 4-6] + B, [12, 30] + B
  CHECK(out.at("y").data == std::vector<double>{-1.5, -3, 12.5, 29});
}

TEST_CASE("onnx import: exporters' shape arithmetic folds into one static reshape") {
  ModelBuilder b;
  b.input("x", {2, 3, 4});
  b.node("Shape", {"x"}, {"s"});
  b.int_initializer("zero", {0});
  b.node("Gather", {"s", "zero"}, {"n"});  // [2]
  b.int_initializer("minus1", {-1});
  auto* cat = b.node("Concat", {"n", "minus1"}, {"target"});
  auto* ax = cat->add_attribute();
  ax->set_name("axis");
  ax->set_type(::onnx::AttributeProto::INT);
  ax->set_i(0);
  b.node("Reshape", {"x", "target"}, {"y"});
  b.output("y");
  ki::ImportedModel im = ki::import_model(b.bytes(), "m.onnx");
  REQUIRE(im.graph["nodes"].size() == 1);
  CHECK(im.graph["nodes"][0]["op"] == "reshape");
  CHECK(im.graph["nodes"][0]["shape"] == nlohmann::json({2, 12}));
}

TEST_CASE("onnx import: NCHW Conv maps to kiln's layout attribute, explicit pads kept") {
  ModelBuilder b;
  b.input("x", {1, 1, 3, 3});
  b.initializer("w", {1, 1, 2, 2}, {1, 1, 1, 1});
  auto* c = b.node("Conv", {"x", "w"}, {"y"});
  set_ints(c, "pads", {1, 1, 0, 0});
  b.output("y");
  ki::ImportedModel im = ki::import_model(b.bytes(), "m.onnx");
  REQUIRE(im.graph["nodes"].size() == 1);
  CHECK(im.graph["nodes"][0]["layout"] == "NCHW");
  CHECK(im.graph["nodes"][0]["padding"] == nlohmann::json({1, 1, 0, 0}));
  Graph graph = parse_graph(im.graph.dump(), "imported");
  std::map<std::string, interp::Value> feeds = im.params;
  feeds["x"] = f32({1, 1, 3, 3}, {1, 2, 3, 4, 5, 6, 7, 8, 9});
  auto y = interp::Interpreter(graph).run(feeds).at("y");
  CHECK(y.shape == Shape{1, 1, 3, 3});
  CHECK(y.data == std::vector<double>{1, 3, 5, 5, 12, 16, 11, 24, 28});  // 2x2 window sums, padded top-left
}

TEST_CASE("onnx import: every problem at once, each naming node, op and reason, readers of a failed node quiet") {
  ModelBuilder b;
  b.input("x", {4});
  b.node("Frobnicate", {"x"}, {"a"}, "first");
  b.node("Relu", {"a"}, {"b"}, "reads_first");  // not reported: its input failed
  auto* lrelu = b.node("LeakyRelu", {"x"}, {"c"}, "second");
  auto* extra = lrelu->add_attribute();
  extra->set_name("flavour");
  extra->set_type(::onnx::AttributeProto::INT);
  extra->set_i(1);
  b.node("Abs", {"x"}, {"d"}, "fine");
  b.output("b");
  b.output("c");
  b.output("d");
  ki::ImportError e = import_error(b.bytes());
  REQUIRE(e.problems.size() == 2);
  CHECK(e.problems[0].node == "first");
  CHECK(e.problems[0].reason == "op Frobnicate is not supported");
  CHECK(e.problems[1].node == "second");
  CHECK(e.problems[1].op == "LeakyRelu");
  CHECK(e.problems[1].reason == "attribute flavour not supported");
  CHECK(std::string(e.what()).find("m.onnx: cannot import (2 problems)") == 0);
}

TEST_CASE("onnx import: files that are not ONNX, truncated models and new opsets are refused by name") {
  ModelBuilder good;
  good.input("x", {4});
  good.node("Abs", {"x"}, {"y"});
  good.output("y");
  std::string bytes = good.bytes();
  CHECK(import_error("certainly not a protobuf \xff\xff\xff").problems[0].reason.find("not an ONNX model") == 0);
  CHECK(import_error(bytes.substr(0, bytes.size() / 2)).problems[0].reason.find("not an ONNX model") == 0);
  ModelBuilder newer(18);
  newer.input("x", {4});
  newer.node("Abs", {"x"}, {"y"});
  newer.output("y");
  CHECK(import_error(newer.bytes()).problems[0].reason == "opset 18 is newer than kiln supports (1-17)");
}

TEST_CASE("onnx import: values computed at import are bounded one by one and in all, shapes by their rank") {
  auto constant_of_shape = [](ModelBuilder& b, const std::string& out, int64_t count) {
    b.int_initializer(out + "_shape", {count});
    b.node("ConstantOfShape", {out + "_shape"}, {out}, out);
  };
  ModelBuilder one;  // a single value over the limit
  one.input("x", {4});
  constant_of_shape(one, "big", ki::kMaxKnownElements + 1);
  one.node("Abs", {"x"}, {"y"});
  one.output("y");
  ki::ImportError e1 = import_error(one.bytes());
  REQUIRE(e1.problems.size() == 1);
  CHECK(e1.problems[0].node == "big");
  CHECK(e1.problems[0].reason.find("a value of 1048577 elements computed at import (kiln's limit: 1048576)") == 0);

  ModelBuilder many;  // each value within the limit, their sum not
  many.input("x", {4});
  for (int i = 0; i < 5; ++i) constant_of_shape(many, "c" + std::to_string(i), ki::kMaxKnownElements);
  many.node("Abs", {"x"}, {"y"});
  many.output("y");
  ki::ImportError e2 = import_error(many.bytes());
  REQUIRE(e2.problems.size() == 1);
  CHECK(e2.problems[0].node == "c4");  // 5 x 2^20 > 2^22: the fifth is refused
  CHECK(e2.problems[0].reason.find("the values computed at import add up to over 4194304 elements") == 0);

  ModelBuilder deep;  // a reshape to 17 dimensions
  deep.input("x", {1});
  deep.int_initializer("target", std::vector<int64_t>(17, 1));
  deep.node("Reshape", {"x", "target"}, {"y"}, "deep");
  deep.output("y");
  ki::ImportError e3 = import_error(deep.bytes());
  REQUIRE(e3.problems.size() == 1);
  CHECK(e3.problems[0].reason.find("gives a result of 17 dimensions (kiln's limit: 16)") != std::string::npos);
  CHECK(shape_str(Shape(20, 1)) == "[1,1,1,1,1,1,1,1,...,1] (20 dimensions)");
  CHECK(shape_str(Shape(16, 2)) == "[2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2]");
}

TEST_CASE("onnx import: a shape fed as a graph input is asked for, and imports once bound") {
  ModelBuilder b;
  b.input("x", {2, 6});
  b.input("shape", {2}, ::onnx::TensorProto::INT64);
  b.node("Reshape", {"x", "shape"}, {"y"});
  b.output("y");
  ki::ImportError e = import_error(b.bytes());
  CHECK(e.needs_constant == std::vector<std::string>{"shape"});
  ki::ImportOptions o;
  o.bind["shape"] = interp::Value{DType::i64, {2}, {3, -1}};
  ki::ImportedModel im = ki::import_model(b.bytes(), "m.onnx", o);
  CHECK(!im.graph["inputs"].contains("shape"));
  CHECK(im.graph["nodes"][0]["shape"] == nlohmann::json({3, 4}));
}

TEST_CASE("onnx import: ONNX's Gradient runs through kiln's autodiff") {
  ModelBuilder b;
  auto* os = b.m.add_opset_import();
  os->set_domain("ai.onnx.preview.training");
  os->set_version(1);
  b.input("a", {});
  b.input("c", {});
  b.node("Mul", {"a", "c"}, {"p"});
  b.node("Mul", {"p", "a"}, {"q"});  // q = a^2 c
  auto* g = b.node("Gradient", {"a", "c"}, {"dq_da", "dq_dc"}, "grad");
  g->set_domain("ai.onnx.preview.training");
  auto* xs = g->add_attribute();
  xs->set_name("xs");
  xs->set_type(::onnx::AttributeProto::STRINGS);
  xs->add_strings("a");
  xs->add_strings("c");
  auto* y = g->add_attribute();
  y->set_name("y");
  y->set_type(::onnx::AttributeProto::STRING);
  y->set_s("q");
  b.output("dq_da");
  b.output("dq_dc");
  ki::ImportedModel im = ki::import_model(b.bytes(), "m.onnx");
  Graph graph = parse_graph(im.graph.dump(), "imported");
  auto out = interp::Interpreter(graph).run({{"a", f32({}, {3})}, {"c", f32({}, {5})}});
  CHECK(out.at("dq_da").data[0] == 30);  // 2 a c
  CHECK(out.at("dq_dc").data[0] == 9);   // a^2
}

TEST_CASE("kiln import writes the graph and its params, and kiln run computes the model from them") {
  ModelBuilder b;
  b.input("x", {2});
  b.initializer("w", {2}, {3, -4});
  b.node("Mul", {"x", "w"}, {"y"});
  b.output("y");
  fs::path dir = fs::temp_directory_path() / "kiln_onnx_import_test";
  fs::remove_all(dir);
  fs::create_directories(dir);
  {
    std::ofstream f(dir / "scale.onnx", std::ios::binary);
    f << b.bytes();
  }
  auto r = run_kiln("import " + (dir / "scale.onnx").string() + " -o " + (dir / "out").string());
  REQUIRE(r.exit_code == 0);
  CHECK(r.output.find("1 params (2 values)") != std::string::npos);
  REQUIRE(fs::exists(dir / "out" / "scale.json"));
  REQUIRE(fs::exists(dir / "out" / "scale.params" / "w.npy"));
  auto bad = run_kiln("import " + (dir / "out" / "scale.json").string());
  CHECK(bad.exit_code == 1);
  CHECK(bad.output.find("not an ONNX model") != std::string::npos);
  fs::remove_all(dir);
}
#endif
