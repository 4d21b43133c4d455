// kiln generate: sample text from a trained byte-level language model (a
// checkpoint of a model whose predict entry maps i32 tokens [B, C] to
// probabilities [B, C, V]) through its compiled predict program.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "compiler/driver/training_setup.h"
#include "compiler/frontend/graph_json.h"
#include "runtime/train/checkpoint.h"
#include "tools/kiln/command.h"

namespace kiln::cli {
namespace {

struct Opts {
  std::string ckpt, prompt = "\n";
  int64_t tokens = 200;
  double temperature = 1.0;
  int top_k = 0;
  uint64_t seed = 1;
  int threads = 0;
};

// The next token from a distribution: greedy at temperature 0, else p^(1/T)
// renormalized over the top k (all when k is 0), drawn with `rng`.
int sample(std::vector<double> p, double temperature, int top_k, std::mt19937_64& rng) {
  const int v = static_cast<int>(p.size());
  if (temperature <= 0) return static_cast<int>(std::max_element(p.begin(), p.end()) - p.begin());
  std::vector<int> order(static_cast<size_t>(v));
  std::iota(order.begin(), order.end(), 0);
  // Ties broken by id, so a draw does not depend on the sort's stability.
  std::sort(order.begin(), order.end(), [&](int a, int b) { return p[a] > p[b] || (p[a] == p[b] && a < b); });
  const int keep = top_k > 0 ? std::min(top_k, v) : v;
  std::vector<double> w(static_cast<size_t>(keep));
  for (int i = 0; i < keep; ++i) w[i] = std::pow(std::max(p[order[i]], 0.0), 1.0 / temperature);
  double total = std::accumulate(w.begin(), w.end(), 0.0);
  if (!(total > 0)) return order[0];
  double u = std::uniform_real_distribution<double>(0.0, total)(rng);
  for (int i = 0; i < keep; ++i) {
    u -= w[i];
    if (u < 0) return order[i];
  }
  return order[keep - 1];
}

void generate(const Opts& o) {
  train::Checkpoint ckpt;
  Graph g;
  try {
    ckpt = train::load_checkpoint(o.ckpt);
    g = parse_graph(ckpt.graph_json, o.ckpt + " (graph)");
  } catch (const std::exception& e) {
    throw InputError(e.what());
  }
  driver::CompiledModel m = driver::compile_model(g, nullptr, 1, o.threads);
  driver::load_params(m, ckpt);
  const EntryInfo* predict = m.program->entry("predict");
  if (!predict || predict->inputs.size() != 1 || predict->outputs.size() != 1)
    throw InputError(o.ckpt + ": the model's predict entry must take one input (tokens) and give one output");
  const TensorInfo& in = predict->inputs[0];
  const TensorInfo& out = predict->outputs[0];
  if (in.type != ElemType::i32 || in.shape.size() != 2 || out.shape.size() != 3 || out.shape[1] != in.shape[1])
    throw InputError(o.ckpt + ": kiln generate needs a language model: predict input i32 [B, C] (got " +
                     std::string(elem_type_name(in.type)) + " " + shape_string(in.shape) + "), output [B, C, V] (got " +
                     shape_string(out.shape) + ")");
  const int64_t context = in.shape[1], vocab = out.shape[2];
  std::vector<int32_t> text;
  for (unsigned char c : o.prompt) {
    if (c >= vocab) throw InputError("the prompt's byte " + std::to_string(c) + " is outside the model's vocabulary of " + std::to_string(vocab));
    text.push_back(c);
  }
  if (text.empty()) throw InputError("--prompt: give at least one character");
  std::mt19937_64 rng(o.seed);
  std::vector<int32_t> window(static_cast<size_t>(context));
  std::vector<float> probs(static_cast<size_t>(context * vocab));
  std::fwrite(o.prompt.data(), 1, o.prompt.size(), stdout);
  for (int64_t n = 0; n < o.tokens; ++n) {
    // The last `context` tokens at positions 0..L-1; with causal attention
    // the positions after L-1 (zeros) cannot change position L-1's output.
    const int64_t len = std::min<int64_t>(context, static_cast<int64_t>(text.size()));
    std::fill(window.begin(), window.end(), 0);
    std::copy(text.end() - len, text.end(), window.begin());
    std::vector<const void*> ins = {window.data()};
    std::vector<void*> outs = {probs.data()};
    m.program->run("predict", 1, ins, outs);
    const float* row = probs.data() + (len - 1) * vocab;
    int next = sample(std::vector<double>(row, row + vocab), o.temperature, o.top_k, rng);
    text.push_back(next);
    std::fputc(next, stdout);
    std::fflush(stdout);
  }
  std::fputc('\n', stdout);
}

RegisterCommand reg{64, [](CLI::App& app) {
  auto* sub = app.add_subcommand("generate", "Sample text from a trained byte-level language model (e.g. char_gpt)");
  auto o = std::make_shared<Opts>();
  sub->add_option("ckpt", o->ckpt, "checkpoint of a language model (kiln train's final.ckpt)")->required()->check(CLI::ExistingFile);
  sub->add_option("--prompt", o->prompt, "text to continue (default: a newline)");
  sub->add_option("--tokens", o->tokens, "characters to generate (default 200)")->check(CLI::NonNegativeNumber);
  sub->add_option("--temperature", o->temperature, "sampling temperature; 0 = always the most likely (default 1)")
      ->check(CLI::NonNegativeNumber);
  sub->add_option("--top-k", o->top_k, "sample among the k most likely characters only (default: all)")->check(CLI::NonNegativeNumber);
  sub->add_option("--seed", o->seed, "seed of the draws (default 1)");
  sub->add_option("--threads", o->threads, "worker threads (default: every core)")->check(CLI::PositiveNumber);
  sub->callback([o] { generate(*o); });
}};

}  // namespace
}  // namespace kiln::cli
