#pragma once
// ONNX -> kiln.graph/1. A model (opsets 1-17 of the default domain) becomes a
// kiln graph JSON document plus its initializers as param values; kiln's own
// frontend then reads that document like any hand-written graph, so an
// imported model is compiled, trained and inspected like one.
//
// Every problem in the model is reported at once (ImportError), each naming
// the ONNX node, its op and the reason; a node that fails does not report
// again for the nodes that read it.
#include <map>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <vector>

#include "compiler/interp/interpreter.h"

namespace kiln::onnx {

struct ImportOptions {
  // Graph inputs known at import: their values replace them. The backend
  // test suite binds the inputs that set a shape, axes, pads or indices of a
  // shape (Reshape's shape, Slice's starts); data inputs are never bound.
  std::map<std::string, interp::Value> bind;
  // The open (batch) dimension: a symbolic first dimension of a graph input
  // becomes it. Other symbolic dimensions are refused.
  bool symbolic_batch = true;
};

struct ImportProblem {
  std::string node;    // the ONNX node's name (its first output when unnamed); "" for model-level problems
  std::string op;      // its op_type
  std::string reason;  // "op not supported", "attribute 'ceil_mode' ...", ...
  std::string kind;    // "unsupported" (an op, attribute or dtype kiln lacks) or "invalid" (a broken model)
  std::string str() const;
};

struct ImportedModel {
  nlohmann::json graph;                          // kiln.graph/1
  std::map<std::string, interp::Value> params;   // initializers read as data, by param name
  int64_t opset = 0;                             // the default domain's
  std::vector<std::string> output_names;         // the ONNX graph's outputs, in order
};

struct ImportError : std::runtime_error {
  ImportError(std::string file, std::vector<ImportProblem> problems);
  std::string file;
  std::vector<ImportProblem> problems;
  // Graph inputs that a node needs as constants (a Reshape's shape fed as an
  // input): bind them (ImportOptions::bind) to import the model.
  std::vector<std::string> needs_constant;
};

// `file` labels the messages. Throws ImportError (not ONNX, a truncated
// protobuf, an opset out of range, a failed ONNX check, unsupported nodes).
ImportedModel import_model(const std::string& bytes, const std::string& file, const ImportOptions& opts = {});
ImportedModel import_file(const std::string& path, const ImportOptions& opts = {});

// An ONNX TensorProto file (the backend tests' input_0.pb) as a value; throws
// std::runtime_error naming the file for a dtype kiln lacks or a broken file.
interp::Value read_tensor_file(const std::string& path, std::string* name = nullptr);

constexpr int64_t kMaxOpset = 17;

// Values computed at import (constants, masks, folded shape arithmetic) stay
// small: an attribute or shape that asks for more is refused, not allocated.
// Each one passes through the graph JSON a few times on its way, so the
// import of a small file stays quick only with a limit on each value and on
// their sum (a 2^20-element value costs about 0.15 s, 0.6 s under ASan).
// Past the sum, nodes that would fold are left to run time; a node that can
// only give a value at import (ConstantOfShape, Range, ...) is refused.
constexpr int64_t kMaxKnownElements = int64_t{1} << 20;
constexpr int64_t kMaxKnownTotal = int64_t{1} << 22;

}  // namespace kiln::onnx
