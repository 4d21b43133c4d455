// The Loop IR verifier catches what a broken lowering or pass would leave,
// naming the kernel; compiled programs verify after every loop pass, and
// kiln ir --stage loops --dump-after-each prints the program after each.
#include <doctest/doctest.h>

#include "compiler/lower/loop_verify.h"
#include "test_util.h"

using namespace kiln;
using namespace kiln::lower;

namespace {

Program one_kernel(std::vector<Stmt> body, DType buffer_type = DType::f32) {
  Program p;
  p.name = "broken";
  p.buffers.push_back({"x", buffer_type, {8}});
  Kernel k;
  k.name = "k0_x";
  k.var_names = {"i", "j"};
  k.body = std::move(body);
  p.kernels.push_back(std::move(k));
  return p;
}

bool mentions(const std::vector<std::string>& problems, const std::string& phrase) {
  for (auto& s : problems)
    if (s.find("kernel k0_x") != std::string::npos && s.find(phrase) != std::string::npos) return true;
  return false;
}

}  // namespace

TEST_CASE("loop verifier: wrong store types, unbound variables, nested parallel loops, missing buffers") {
  CHECK(verify_program(one_kernel({loop_stmt(0, c_int(0), c_int(8), {store_stmt(0, var(0), c_float(1))})})).empty());
  CHECK(mentions(verify_program(one_kernel({loop_stmt(0, c_int(0), c_int(8), {store_stmt(0, var(0), c_float(1, Scalar::f64))})})),
                 "stores f64 into x (f32)"));
  CHECK(mentions(verify_program(one_kernel({store_stmt(0, var(1), c_float(1))})), "loop variable 1 is read outside its loop"));
  CHECK(mentions(verify_program(one_kernel({loop_stmt(0, c_int(0), c_int(2), {loop_stmt(1, c_int(0), c_int(4), {store_stmt(0, var(1), c_float(0))}, true)})})),
                 "a parallel loop below the top level"));
  CHECK(mentions(verify_program(one_kernel({store_stmt(3, c_int(0), c_float(1))})), "stored buffer 3 does not exist"));
  CHECK_THROWS_WITH_AS(verify_program_or_throw(one_kernel({store_stmt(3, c_int(0), c_float(1))}), "pass 'x'"),
                       doctest::Contains("malformed after pass 'x'"), std::logic_error);
}

TEST_CASE("kiln ir --stage loops --dump-after-each prints the Loop IR after lowering and after each loop pass") {
  auto r = kiln::test::run_kiln("ir graphs/cnn_mnist.json --stage loops --dump-after-each --batch 8 2>&1");
  INFO(r.output.substr(0, 2000));
  CHECK(r.exit_code == 0);
  size_t at = 0;
  for (const char* pass : {"// ---- Loop IR after lowering", "// ---- after fuse-gemm-epilogues", "// ---- after split-reductions",
                           "// ---- after plan-memory"}) {
    CAPTURE(pass);
    size_t next = r.output.find(pass, at);
    CHECK(next != std::string::npos);
    if (next != std::string::npos) at = next;
  }
}
