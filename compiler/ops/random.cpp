// Randomness: random_uniform draws one Philox-4x32-10 number per element (a
// pure function of seed, stream, step and the element's global index, so the
// same on any thread count, JIT or AOT, after a resume, and on any number of
// data-parallel ranks), and dropout uses it in training only.
#include "compiler/interp/ref_ctx.h"
#include "compiler/ir/builder.h"
#include "compiler/lower/lower_ctx.h"
#include "compiler/ops/registry.h"
#include "runtime/random/philox.h"

namespace kiln {

namespace {

random::Key key_of(const Attrs& a) {
  return random::stream_key(static_cast<uint64_t>(a.at("seed").get<int64_t>()),
                            static_cast<uint64_t>(a.at("stream").get<int64_t>()));
}

// The Philox rounds as loop IR over i64 words holding 32 bits each; the
// round keys are constants of the kernel. Every round's words are locals, so
// the expression stays a chain, not a tree that doubles per round.
lower::E philox_word0(lower::KernelBuilder& k, lower::E index, lower::E step, random::Key key) {
  using lower::E;
  const E mask(int64_t{0xffffffff});
  E c[4] = {lower::bit_and(index, mask), lower::shift_right(index, E(32)), lower::bit_and(step, mask),
            lower::shift_right(step, E(32))};
  for (int r = 0; r < random::kPhiloxRounds; ++r) {
    if (r > 0) key = {key[0] + random::kPhiloxW0, key[1] + random::kPhiloxW1};
    E p0 = k.let("p0", E(int64_t{random::kPhiloxM0}) * c[0]);
    E p1 = k.let("p1", E(int64_t{random::kPhiloxM1}) * c[2]);
    E next[4] = {lower::bit_xor(lower::bit_xor(lower::shift_right(p1, E(32)), c[1]), E(int64_t{key[0]})),
                 lower::bit_and(p1, mask),
                 lower::bit_xor(lower::bit_xor(lower::shift_right(p0, E(32)), c[3]), E(int64_t{key[1]})),
                 lower::bit_and(p0, mask)};
    for (int w = 0; w < 4; ++w) c[w] = k.let("c" + std::to_string(w), next[w]);
  }
  return c[0];
}

void add_random_ops(OpRegistry& r) {
  r.add({.name = "random_uniform", .family = "random",
         .summary = "uniform [0, 1) numbers of like's shape from Philox-4x32-10: element first_row * (row size) + i "
                    "of draw `step` in stream (seed, stream)",
         .inputs = {"like", "step", "first_row"},
         .attrs = {{"seed", AttrKind::Int, false, 0, "the graph's seed"},
                   {"stream", AttrKind::Int, false, 0, "which stream (dropout: its node name's hash)"}},
         .shape_rule = "like: S, step: i64 scalar, first_row: i64 scalar -> f32 S",
         .infer = [](const InferCtx& c) {
           if (c.in[1].dtype != DType::i64 || !c.in[1].shape.empty())
             throw OpError("step must be an i64 scalar, got " + type_str(c.in[1]));
           if (c.in[2].dtype != DType::i64 || !c.in[2].shape.empty())
             throw OpError("first_row must be an i64 scalar, got " + type_str(c.in[2]));
           if (c.in[0].shape.empty()) throw OpError("like must have at least one dimension (its rows are numbered)");
           return TensorType{DType::f32, c.in[0].shape};
         },
         .no_grad = true,
         .pattern = OpPattern::opaque,
         .samples = {{{{{-1, 17}}, {{}, 0, 1000, DType::i64}, {{}, 0, 100, DType::i64}}, {{"seed", 7}, {"stream", 3}}},
                     {{{{3, 33}}, {{}, 0, 5, DType::i64}, {{}, 0, 3, DType::i64}}}}});

  r.add({.name = "dropout", .family = "random",
         .summary = "training: each element kept with probability 1 - rate and scaled by 1 / (1 - rate); inference: x",
         .inputs = {"x"},
         .attrs = {{"rate", AttrKind::Float, false, 0.5, "the probability of zeroing an element", {}, 0, 0.999}},
         .shape_rule = "x: S -> S",
         .infer = [](const InferCtx& c) {
           if (!is_float(c.in[0].dtype)) throw OpError("dropout needs a float input, got " + type_str(c.in[0]));
           return c.in[0];
         },
         .pattern = OpPattern::opaque,
         .by_mode = [](GraphBuilder& b, NodeId id, const ModeCtx& ctx) -> NodeId {
           const Node n = b.graph().node(id);
           const double rate = n.attrs.at("rate").get<double>();
           const NodeId x = n.inputs[0];
           if (ctx.mode == Mode::infer || rate == 0) return x;
           NodeId step = ctx.step != kNoNode ? ctx.step : b.constant(0, DType::i64);
           // Rows of the batch are numbered globally (a rank's shard starts at
           // first_sample); a tensor without the batch dimension draws the same
           // numbers on every rank.
           const auto& shape = b.graph().node(x).type.shape;
           const bool batched = !shape.empty() && shape[0] == kOpenDim && ctx.first_sample != kNoNode;
           NodeId first = batched ? ctx.first_sample : b.constant(0, DType::i64);
           NodeId u = b.add("random_uniform", {x, step, first},
                            {{"seed", static_cast<int64_t>(ctx.seed)},
                             {"stream", static_cast<int64_t>(random::name_hash(n.name.c_str()))}});
           NodeId keep = b.add("compare", {u, b.constant(rate)}, {{"kind", "ge"}});
           NodeId scaled = b.add2("mul", x, b.scalar_like(1 / (1 - rate), x));
           return b.add("where", {keep, scaled, b.scalar_like(0, x)});
         },
         .samples = {{{{{-1, 17}}}, {{"rate", 0.25}}}, {{{{4, 33}}}, {{"rate", 0.5}}}}});
}

void add_random_reference(OpRegistry& r) {
  r.find_mut("random_uniform")->reference = [](interp::RefCtx& c) {
    c.out = interp::Array::from_shape(c.in[0]->shape());
    const random::Key key = key_of(c.attrs);
    const auto step = static_cast<uint64_t>(static_cast<int64_t>((*c.in[1])()));
    const auto& shape = c.in[0]->shape();
    const uint64_t rows = shape.empty() || shape[0] == 0 ? 1 : static_cast<uint64_t>(shape[0]);
    uint64_t i = static_cast<uint64_t>(static_cast<int64_t>((*c.in[2])())) * (c.out.size() / rows);
    for (double& v : c.out) v = random::uniform(key, step, i++);
  };
}

void add_random_lowering(OpRegistry& r) {
  r.find_mut("random_uniform")->lower = [](lower::LowerCtx& c) {
    using namespace lower;
    auto k = c.kernel("Philox-4x32-10 uniforms, stream " + c.attrs.at("stream").dump());
    const random::Key key = key_of(c.attrs);
    const bool parallel = numel(c.out.shape, c.max_batch()) >= kParallelMinElements / 8;
    int64_t row_elems = 1;  // static: only the first dimension may be open
    for (size_t d = 1; d < c.out.shape.size(); ++d) row_elems *= c.out.shape[d];
    k.loop("i", 0, c.out.size(), [&](E i) {
      E step = k.load(c.in[1], 0);
      E global = k.load(c.in[2], 0) * E(row_elems) + i;
      E word = philox_word0(k, global, step, key);
      k.store(c.out, i, cast(shift_right(word, E(8)), Scalar::f32) * lit(1.0 / 16777216.0, Scalar::f32));
    }, parallel);
  };
}

}  // namespace

void register_random_family(OpRegistry& r) {
  add_random_ops(r);
  add_random_reference(r);
  add_random_lowering(r);
}

}  // namespace kiln
