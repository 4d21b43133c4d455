// graphs/op_tour.json (an attention block over gathered embeddings, batched
// products with broadcast, concat, slice, pad, cumsum, inline nodes): every
// compiled kernel matches the interpreter, and autodiff matches finite
// differences for every param.
#include <doctest/doctest.h>

#include "test_util.h"

using kiln::test::run_kiln;

TEST_CASE("op tour: kiln compile --check-numerics matches every node, kiln gradcheck passes") {
  auto numerics = run_kiln("compile graphs/op_tour.json --check-numerics --batch 5 2>&1");
  INFO(numerics.output);
  CHECK(numerics.exit_code == 0);
  CHECK(numerics.output.find("check-numerics eval_step: ") != std::string::npos);
  CHECK(numerics.output.find("nodes match the interpreter (batch 5)") != std::string::npos);
  auto grad = run_kiln("gradcheck graphs/op_tour.json 2>&1");
  INFO(grad.output);
  CHECK(grad.exit_code == 0);
  CHECK(grad.output.find("PASS") != std::string::npos);
  for (const char* param : {"embedding", "wq", "wk", "wv", "w4"}) CHECK(grad.output.find(param) != std::string::npos);
}

TEST_CASE("layer tour: conv1d, conv2d_transpose, dilated and padded conv2d, pools: check-numerics and gradcheck pass") {
  auto numerics = run_kiln("compile graphs/layer_tour.json --check-numerics --batch 3 2>&1");
  INFO(numerics.output);
  CHECK(numerics.exit_code == 0);
  CHECK(numerics.output.find("nodes match the interpreter (batch 3)") != std::string::npos);
  auto grad = run_kiln("gradcheck graphs/layer_tour.json 2>&1");
  INFO(grad.output);
  CHECK(grad.exit_code == 0);
  for (const char* param : {"c1/kernel", "up/kernel", "up/bias", "c2/kernel"}) CHECK(grad.output.find(param) != std::string::npos);
  CHECK(grad.output.find("PASS") != std::string::npos);
}
