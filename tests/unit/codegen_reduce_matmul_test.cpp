// JIT vs interpreter: reductions, index ops, matmul in every transpose form,
// and the composites built from them.
#include "tests/unit/codegen_helpers.h"

using namespace kiln;
using namespace kiln::codegen_test;

TEST_CASE("codegen: reduce_sum and reduce_max over every axis pattern") {
  JitCase t(7, 8);
  NodeId x = t.input("x", {-1, 7, 33});
  NodeId w = t.input("w", {-1, 257}, -5, 5);
  NodeId i = t.input("i", {-1, 65}, -100, 100, DType::i32);
  int n = 0;
  for (auto axes : std::vector<std::vector<int64_t>>{{}, {0}, {1}, {2}, {0, 1}, {0, 2}, {1, 2}, {-1}}) {
    for (bool keep : {false, true}) {
      Attrs a{{"axes", axes}, {"keepdims", keep}};
      t.out("sum" + std::to_string(n), t.op("reduce_sum", {x}, a));
      t.out("max" + std::to_string(n), t.op("reduce_max", {x}, a));
      ++n;
    }
  }
  t.out("sum_rows", t.op("reduce_sum", {w}, {{"axes", {1}}}));
  t.out("sum_batch", t.op("reduce_sum", {w}, {{"axes", {0}}}));
  t.out("max_all", t.op("reduce_max", {w}));
  t.out("mean", t.op("reduce_mean", {w}, {{"axes", {0}}}));
  t.out("mean_all", t.op("reduce_mean", {x}));
  t.out("isum", t.op("reduce_sum", {i}, {{"axes", {1}}}));
  t.out("imax", t.op("reduce_max", {i}, {{"axes", {0}}}));
  t.out("batch_size", t.op("dim_size", {x}, {{"axis", 0}}));
  t.check();
}

TEST_CASE("codegen: argmax, one_hot, softmax and log_softmax") {
  JitCase t(7, 16);
  NodeId x = t.input("x", {-1, 7, 33}, -4, 4);
  NodeId logits = t.input("logits", {-1, 257}, -30, 30);
  NodeId labels = t.input("labels", {-1}, -1, 12, DType::i32);  // some outside [0, 10): zero rows
  t.out("argmax_last", t.op("argmax", {x}, {{"axis", -1}}));
  t.out("argmax_mid", t.op("argmax", {x}, {{"axis", 1}}));
  t.out("argmax_batch", t.op("argmax", {x}, {{"axis", 0}}));
  t.out("one_hot", t.op("one_hot", {labels}, {{"depth", 10}}));
  t.out("softmax", t.op("softmax", {logits}));
  t.out("log_softmax", t.op("log_softmax", {logits}));
  t.out("softmax_axis1", t.op("softmax", {x}, {{"axis", 1}}));
  t.check();
}

TEST_CASE("codegen: matmul in every transpose form, odd sizes, the batch as M and as K") {
  JitCase t(7, 12);
  NodeId x = t.input("x", {-1, 65});      // [N, K]
  NodeId w = t.input("w", {65, 33});
  NodeId wt = t.input("wt", {33, 65});
  NodeId dy = t.input("dy", {-1, 33});
  NodeId a1 = t.input("a1", {1, 257});
  NodeId b1 = t.input("b1", {257, 1});
  NodeId big = t.input("big", {257, 300});
  NodeId bigb = t.input("bigb", {300, 65});
  t.out("nn", t.op("matmul", {x, w}));
  t.out("nt", t.op("matmul", {x, wt}, {{"transpose_b", true}}));
  t.out("tn_batch_k", t.op("matmul", {x, dy}, {{"transpose_a", true}}));                         // x^T dy: K = N
  t.out("tt", t.op("matmul", {w, wt}, {{"transpose_a", true}, {"transpose_b", true}}));          // [33,33]
  t.out("nt_batch_m", t.op("matmul", {dy, w}, {{"transpose_b", true}}));                         // dy w^T: [N,65]
  t.out("dot", t.op("matmul", {a1, b1}));
  t.out("outer", t.op("matmul", {b1, a1}));
  t.out("blocked", t.op("matmul", {big, bigb}));   // several N, K and M blocks with tails
  t.check();
}

TEST_CASE("codegen: dense, losses and metrics composites") {
  JitCase t(5, 8);
  NodeId x = t.input("x", {-1, 33});
  NodeId w = t.param("w", {33, 10});
  NodeId bias = t.param("bias", {10});
  NodeId target = t.input("target", {-1, 10}, 0, 1);
  NodeId labels = t.input("labels", {-1}, 0, 10, DType::i32);
  NodeId bin = t.input("bin", {-1, 1}, 0, 2, DType::i32);
  NodeId y = t.op("dense", {x, w, bias});
  NodeId head = t.op("matmul", {x, t.param("h", {33, 1})});
  t.out("dense", y);
  t.out("mse", t.op("mse", {y, target}));
  t.out("sce", t.op("sparse_softmax_cross_entropy", {y, labels}));
  t.out("bce", t.op("binary_cross_entropy", {t.op("mul", {head, t.b.constant(20.0)}), bin}));
  t.out("l2", t.op("l2_penalty", {w, t.op("reshape", {bias}, {{"shape", {2, 5}}})}, {{"reg", 5e-3}}));
  t.out("correct_sparse", t.op("correct_count", {y, labels}));
  t.out("correct_onehot", t.op("correct_count", {y, target}, {{"labels", "onehot"}}));
  t.out("correct_binary", t.op("correct_count", {head, bin}, {{"labels", "binary"}}));
  t.check();
}
