#pragma once
// Differential testing of the whole compiler on random graphs (`kiln difftest`).
//
// generate() builds a typed graph that is valid by construction: every node
// is one of an op's registry samples (its shapes, attributes and value
// ranges), with its dimensions remapped (1, primes, sizes around the vector
// widths) and its inputs taken from earlier nodes where the op's own shape
// rule accepts them, so chains form that fusion, GEMM epilogues and the
// memory plan must handle. A scalar "loss" makes training steps buildable.
//
// check_case() compiles it several ways and compares (DIFFTEST.md in this
// folder gives the tolerance and why): the JIT against the f64 interpreter,
// fusion off, 1 against 2 threads (bitwise), AOT against JIT (bitwise), the
// 256-bit kernels where the host is wider, one training step against the
// interpreter, gradcheck in f64. A mismatch counts only when it recurs on
// fresh draws of the inputs (a kink crossed by rounding does not).
#include <cstdint>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "compiler/interp/interpreter.h"
#include "compiler/ir/graph.h"

namespace kiln::difftest {

// How one graph input or param is drawn.
struct ValueRange {
  double lo = -1, hi = 1;
  int64_t index_bound = 0;  // > 0: integers in [0, index_bound) (an index an op reads)
};

// Special values planted in the float inputs (every fifth element): NaN,
// +-infinity, +-denormals (1e-40, below f32's smallest normal), signed zeros.
enum class Planted { none, nan, inf, denormal, zero };
std::string planted_name(Planted p);

struct Case {
  Graph model;                              // forward graph with a scalar "loss" output
  std::map<std::string, ValueRange> ranges; // every input and param
  uint64_t seed = 0;
  bool large = false;                       // tensors big enough to run kernels on 2 threads
  std::vector<std::string> ops;             // the registry ops picked, in order
};

struct GenOptions {
  int min_ops = 2, max_ops = 7;
  std::string first_op;                     // the graph's first op ("": drawn like the others)
  double large_fraction = 0.2;              // graphs whose tensors reach the parallel threshold
};

Case generate(uint64_t seed, const GenOptions& options = {});

// Every registry op a generated graph may pick (all but the interface ops).
std::vector<std::string> generatable_ops();

enum class Check : uint8_t { jit, fusion_off, threads, aot, width_256, train_step, gradcheck };
std::string check_name(Check c);
std::vector<Check> all_checks();

struct CheckOptions {
  std::vector<Check> checks = all_checks();
  Planted planted = Planted::none;
  int confirm_draws = 2;        // a mismatch must recur on this many fresh draws
};

struct Finding {
  Check check;
  std::string message;          // names the output, the element, both values and the bound
};

struct CaseResult {
  std::vector<Finding> findings;
  std::vector<Check> ran;       // checks that applied (AOT needs a linker, width_256 a wider host, ...)
  int unconfirmed = 0;          // mismatches that did not recur on fresh draws
};

CaseResult check_case(const Case& c, const CheckOptions& options);

// Graph inputs drawn from their ranges (the open dimension as `batch`),
// params too, with `planted` specials in float tensors.
std::map<std::string, interp::Value> draw_values(const Case& c, int64_t batch, uint64_t seed, Planted planted);

// Smallest graph (fewest nodes) derived from `c` by replacing nodes with
// fresh inputs and dropping outputs, for which `fails` still holds.
Case shrink(const Case& c, const std::function<bool(const Case&)>& fails);

// A case as a fixture (kiln.difftest/1: the graph as kiln.graph/1, the input
// ranges, the seed, what failed) and back.
nlohmann::json case_to_json(const Case& c, const std::string& finding);
Case case_from_json(const nlohmann::json& j, const std::string& file);
// The checks and planted specials a fixture records (every check when none).
CheckOptions fixture_options(const nlohmann::json& j);
// kiln.graph/1 text of a graph of primitives (every attribute written out).
nlohmann::json graph_to_json(const Graph& g);

}  // namespace kiln::difftest
