// JIT vs interpreter: elementwise primitives, broadcasting, casts, layout ops.
#include "tests/unit/codegen_helpers.h"

using namespace kiln;
using namespace kiln::codegen_test;

TEST_CASE("codegen: arithmetic with broadcasting over odd sizes and an open batch") {
  JitCase t(7, 9);  // run at batch 7, compiled for 9
  NodeId x = t.input("x", {-1, 33});
  NodeId y = t.input("y", {33});
  NodeId z = t.input("z", {-1, 1});
  NodeId w = t.input("w", {-1, 257}, -3, 3);
  NodeId s = t.input("s", {1});
  NodeId pos = t.input("pos", {65}, 0.5, 2);
  NodeId big = t.input("big", {-1, 65}, -1, 1);
  t.out("add", t.op("add", {x, y}));
  t.out("sub", t.op("sub", {x, z}));
  t.out("mul", t.op("mul", {z, y}));            // [?,1] * [33] -> [?,33]
  t.out("div", t.op("div", {big, pos}));
  t.out("div_scalar", t.op("div", {w, t.b.constant(3.0)}));
  t.out("maximum", t.op("maximum", {w, t.b.constant(0.5)}));
  t.out("max_bcast", t.op("maximum", {x, y}));
  t.out("neg", t.op("neg", {w}));
  t.out("exp", t.op("exp", {w}));
  t.out("log", t.op("log", {pos}));
  t.out("sqrt", t.op("sqrt", {pos}));
  t.out("square", t.op("square", {w}));
  t.out("scalar_mix", t.op("add", {t.op("mul", {s, w}), s}));
  t.check();
}

TEST_CASE("codegen: sigmoid is stable in both tails and on 1-element tensors") {
  JitCase t(1, 4);
  NodeId x = t.input("x", {-1, 257}, -60, 60);
  NodeId one = t.input("one", {-1, 1}, -3, 3);
  t.out("sigmoid", t.op("sigmoid", {x}));
  t.out("relu", t.op("relu", {x}));
  t.out("one_exp", t.op("exp", {one}));
  t.out("one_sum", t.op("reduce_sum", {one}));
  auto got = t.check();
  for (double v : got.at("sigmoid").data) CHECK((v >= 0 && v <= 1));
}

TEST_CASE("codegen: compare, select and cast, including bool and i32 tensors") {
  JitCase t(5, 8);
  NodeId a = t.input("a", {-1, 65}, -2, 2, DType::i32);
  NodeId bb = t.input("b", {65}, -2, 2, DType::i32);
  NodeId x = t.input("x", {-1, 65});
  NodeId y = t.input("y", {-1, 65});
  for (const char* kind : {"lt", "le", "gt", "ge", "eq", "ne"}) {
    t.out(std::string("cmp_i_") + kind, t.op("compare", {a, bb}, {{"kind", kind}}));
    t.out(std::string("cmp_f_") + kind, t.op("compare", {x, y}, {{"kind", kind}}));
  }
  NodeId mask = t.op("compare", {x, y}, {{"kind", "gt"}});
  t.out("select", t.op("select", {mask, x, y}));
  t.out("select_int", t.op("select", {mask, a, t.op("neg", {a})}));
  t.out("cast_f2i", t.op("cast", {t.op("mul", {x, t.b.constant(10.0)})}, {{"dtype", "i32"}}));
  t.out("cast_i2f", t.op("cast", {a}, {{"dtype", "f32"}}));
  t.out("cast_b2f", t.op("cast", {mask}, {{"dtype", "f32"}}));
  t.out("cast_f2b", t.op("cast", {a}, {{"dtype", "bool"}}));
  t.out("cast_i2i64", t.op("cast", {a}, {{"dtype", "i64"}}));
  t.out("int_arith", t.op("sub", {t.op("mul", {a, bb}), t.op("add", {a, bb})}));
  NodeId divisor = t.input("divisor", {65}, 1, 6, DType::i32);
  NodeId signed_divisor = t.op("select", {t.op("compare", {bb, t.b.constant(0.0, DType::i32)}, {{"kind", "ge"}}), divisor,
                                           t.op("neg", {divisor})});
  t.out("int_div", t.op("div", {t.op("mul", {a, t.b.constant(7.0, DType::i32)}), signed_divisor}));
  t.check();
}

TEST_CASE("codegen: reshape, transpose and broadcast") {
  JitCase t(3, 4);
  NodeId x = t.input("x", {-1, 7, 5, 3});
  NodeId m = t.input("m", {33, 65});
  NodeId v = t.input("v", {7, 1});
  t.out("reshape", t.op("reshape", {x}, {{"shape", {-1, 105}}}));
  t.out("transpose4", t.op("transpose", {x}, {{"perm", {0, 3, 1, 2}}}));
  t.out("transpose_batch_inner", t.op("transpose", {x}, {{"perm", {2, 1, 3, 0}}}));
  t.out("transpose2", t.op("transpose", {m}, {{"perm", {1, 0}}}));
  t.out("broadcast", t.op("broadcast", {v}, {{"shape", {-1, 7, 33}}}));
  t.out("broadcast_static", t.op("broadcast", {v}, {{"shape", {7, 257}}}));
  t.check();
}

TEST_CASE("codegen: every vector width gives the same results (128, 256, 512 bits)") {
  for (int bits : {128, 256, 512}) {
    INFO("vector bits " << bits);
    JitCase t(6, 6);
    NodeId x = t.input("x", {-1, 65});
    NodeId y = t.input("y", {65});
    t.out("mix", t.op("sigmoid", {t.op("add", {t.op("mul", {x, y}), x})}));
    t.out("rowsum", t.op("reduce_sum", {x}, {{"axes", {1}}}));
    t.out("rowmax", t.op("reduce_max", {x}, {{"axes", {-1}}}));
    t.out("mm", t.op("matmul", {x, t.op("reshape", {t.op("broadcast", {y}, {{"shape", {7, 65}}})}, {{"shape", {65, 7}}})}));
    t.check(1e-5, bits);
  }
}
