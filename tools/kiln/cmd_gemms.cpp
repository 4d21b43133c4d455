// kiln gemms: the GEMMs an entry point amounts to, convolutions as their
// im2col GEMMs, each as a BLAS library would run it. A benchmark times these
// shapes with a reference BLAS to get the machine limit of a step
// (tools/bench/peers/machine_limit.py --gemms).
#include <cstdio>
#include <iostream>

#include "compiler/driver/training_setup.h"
#include "compiler/frontend/graph_json.h"
#include "compiler/frontend/train_spec.h"
#include "compiler/ops/registry.h"
#include "tools/kiln/command.h"

namespace kiln::cli {

Graph load_graph_or_fail(const std::string& path);
TrainSpec load_spec_or_fail(const std::string& path);

namespace {

struct NodeGemms {
  const Node* node;
  std::vector<GemmShape> gemms;
};

std::vector<NodeGemms> entry_gemms(const Graph& g, int64_t batch) {
  std::vector<NodeGemms> out;
  for (const Node& n : g.nodes) {
    const OpDef* def = OpRegistry::get().find(n.op);
    if (def && def->gemms) out.push_back({&n, def->gemms(g, n, batch)});
  }
  return out;
}

nlohmann::json as_json(const std::vector<NodeGemms>& list, const std::string& entry, int64_t batch) {
  nlohmann::json rows = nlohmann::json::array();
  double flops = 0;
  for (const NodeGemms& ng : list)
    for (const GemmShape& s : ng.gemms) {
      rows.push_back({{"node", ng.node->name}, {"op", ng.node->op}, {"origin", ng.node->origin}, {"count", s.count},
                      {"m", s.m}, {"k", s.k}, {"n", s.n}, {"trans_a", s.trans_a}, {"trans_b", s.trans_b}});
      flops += 2.0 * static_cast<double>(s.multiply_adds());
    }
  return {{"entry", entry}, {"batch", batch}, {"flops", flops}, {"gemms", rows}};
}

void print_table(const std::vector<NodeGemms>& list, const std::string& entry, int64_t batch) {
  double total = 0;
  std::printf("%s at batch %lld: GEMMs (C[M,N] = op(A)[M,K] op(B)[K,N]; convolutions as im2col GEMMs per group)\n",
              entry.c_str(), static_cast<long long>(batch));
  std::printf("%-40s %-24s %6s %9s %7s %7s %5s %10s\n", "node", "op", "count", "M", "K", "N", "op", "MFLOP");
  for (const NodeGemms& ng : list)
    for (const GemmShape& s : ng.gemms) {
      const double mflop = 2e-6 * static_cast<double>(s.multiply_adds());
      total += mflop;
      std::string ops = std::string(s.trans_a ? "T" : "N") + (s.trans_b ? "T" : "N");
      std::printf("%-40.40s %-24.24s %6lld %9lld %7lld %7lld %5s %10.2f\n", ng.node->name.c_str(), ng.node->op.c_str(),
                  static_cast<long long>(s.count), static_cast<long long>(s.m), static_cast<long long>(s.k),
                  static_cast<long long>(s.n), ops.c_str(), mflop);
    }
  std::printf("total: %.3f GFLOP\n", total / 1e3);
}

}  // namespace

static RegisterCommand gemms_cmd(35, [](CLI::App& app) {
  auto* sub = app.add_subcommand("gemms", "List the GEMMs of an entry point (convolutions as im2col GEMMs) and its FLOPs");
  struct Opts {
    std::string graph, spec, entry;
    int64_t batch = 0;
    bool json = false;
  };
  auto o = std::make_shared<Opts>();
  sub->add_option("graph", o->graph, "model graph JSON")->required()->check(CLI::ExistingFile);
  sub->add_option("--train", o->spec, "training spec: the training step's GEMMs (forward, backward)")
      ->check(CLI::ExistingFile);
  sub->add_option("--entry", o->entry, "entry point (default: train_step with --train, else predict)")
      ->check(CLI::IsMember({"train_step", "eval_step", "predict"}));
  sub->add_option("--batch", o->batch, "batch size (default: the spec's, else 1)")->check(CLI::Range(1, 1 << 20));
  sub->add_flag("--json", o->json, "print JSON: entry, batch, flops and one object per GEMM");
  sub->callback([o] {
    Graph g = load_graph_or_fail(o->graph);
    TrainSpec spec;
    if (!o->spec.empty()) spec = expand_sweeps(load_spec_or_fail(o->spec)).front();
    if (o->entry.empty()) o->entry = o->spec.empty() ? "predict" : "train_step";
    if (o->entry == "train_step" && o->spec.empty()) throw InputError("gemms --entry train_step needs --train SPEC");
    if (!o->batch && !o->spec.empty() && spec.full_batch)
      throw InputError("the spec trains on the whole data set at once: give the batch with --batch");
    const int64_t batch = o->batch ? o->batch : o->spec.empty() ? 1 : spec.batch_size;
    std::unique_ptr<const codegen::ProgramGraphs> graphs;
    try {
      graphs = driver::model_graphs(std::move(g), o->spec.empty() ? nullptr : &spec);
    } catch (const GraphError& e) {
      throw InputError(e.what());
    } catch (const std::invalid_argument& e) {
      throw InputError(e.what());
    }
    for (const lower::EntrySpec& e : graphs->entries())
      if (e.name == o->entry) {
        auto list = entry_gemms(*e.graph, batch);
        if (o->json) std::cout << as_json(list, e.name, batch).dump(1) << "\n";
        else print_table(list, e.name, batch);
        return;
      }
    throw InputError("the program has no " + o->entry + " entry point");
  });
});

}  // namespace kiln::cli
