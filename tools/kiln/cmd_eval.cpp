// kiln eval / kiln predict: use a checkpoint's weights (its graph and spec are
// stored in it) on a data set or on images from a .npy file.
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "compiler/driver/training_setup.h"
#include "compiler/frontend/graph_json.h"
#include "runtime/data/npy.h"
#include "runtime/report/plot.h"
#include "runtime/train/predictions.h"
#include "runtime/train/trainer.h"
#include "tools/kiln/command.h"
#include "tools/kiln/data_prepare.h"

namespace kiln::cli {
namespace {

namespace fs = std::filesystem;

struct Loaded {
  train::Checkpoint ckpt;
  Graph graph;
  TrainSpec spec;
};

Loaded load(const std::string& path) {
  Loaded l;
  try {
    l.ckpt = train::load_checkpoint(path);
  } catch (const std::exception& e) {
    throw InputError(e.what());
  }
  try {
    l.graph = parse_graph(l.ckpt.graph_json, path + " (graph)");
    l.spec = parse_train_spec(l.ckpt.spec_json, path + " (spec)");
  } catch (const GraphError& e) {
    throw InputError(std::string("the checkpoint's graph or spec does not parse: ") + e.what());
  }
  return l;
}

driver::CompiledModel compile_forward(const Loaded& l, int64_t max_batch, int threads) {
  driver::CompiledModel m = driver::compile_model(l.graph, nullptr, max_batch, threads);
  driver::load_params(m, l.ckpt);
  return m;
}

RegisterCommand eval_cmd{62, [](CLI::App& app) {
  auto* sub = app.add_subcommand("eval", "Loss, accuracy and confusion matrix of a checkpoint on a data set");
  struct Opts {
    std::string ckpt, data, split = "test", data_dir, out;
    int64_t subset = 0, batch = 256;
    int threads = 0;
  };
  auto o = std::make_shared<Opts>();
  sub->add_option("checkpoint", o->ckpt, "a checkpoint written by kiln train")->required()->check(CLI::ExistingFile);
  sub->add_option("--data", o->data, "data set (must be the one the model was trained on)")
      ->required()->check(CLI::IsMember({"mnist", "cifar10"}));
  sub->add_option("--split", o->split, "test or train")->check(CLI::IsMember({"test", "train"}));
  sub->add_option("--data-dir", o->data_dir, "folder of the prepared data set (default: the spec's, else data/<set>)");
  sub->add_option("--subset", o->subset, "a seeded random N images (the spec's seed)")->check(CLI::PositiveNumber);
  sub->add_option("--out", o->out, "where to write confusion.png (default: next to the checkpoint)");
  sub->add_option("--threads", o->threads, "worker threads (default: every core)")->check(CLI::PositiveNumber);
  sub->callback([o] {
    Loaded l = load(o->ckpt);
    if (l.spec.dataset != o->data)
      throw InputError(o->ckpt + " was trained on " + l.spec.dataset + ", not " + o->data);
    if (!o->data_dir.empty()) l.spec.data_dir = o->data_dir;
    else if (!fs::exists(l.spec.data_dir)) l.spec.data_dir = (fs::path(default_data_dir()) / o->data).string();
    data::Dataset d;
    try {
      d = driver::load_split(l.spec, o->split);
    } catch (const driver::MissingDataError& e) {
      throw InputError(e.what());
    }
    if (o->subset > 0 && o->subset < d.size()) d = data::subset_random(d, o->subset, l.spec.seed);
    driver::CompiledModel m = compile_forward(l, o->batch, o->threads);
    train::EvalResult r = train::evaluate(*m.program, d, m.features_input, m.labels_input);
    int classes = l.spec.labels == "binary" ? 2 : 10;
    report::ConfusionMatrix cm = train::confusion_matrix(*m.program, d, classes);
    std::printf("%s on %s %s (%lld images): loss %.4f, accuracy %.4f\n", o->ckpt.c_str(), o->data.c_str(),
                o->split.c_str(), static_cast<long long>(r.samples), r.loss, r.accuracy);
    std::printf("confusion matrix (rows: truth, columns: prediction):\n%s", cm.to_text().c_str());
    fs::path dir = o->out.empty() ? fs::path(o->ckpt).parent_path() : fs::path(o->out);
    if (dir.empty()) dir = ".";
    fs::create_directories(dir);
    std::string png = (dir / ("confusion_" + o->split + ".png")).string();
    try {
      report::plot_confusion(cm, {}, l.spec.name + " on " + o->data + " " + o->split, png);
      std::printf("heat map: %s\n", png.c_str());
    } catch (const std::exception& e) {
      std::fprintf(stderr, "warning: no heat map: %s\n", e.what());
    }
  });
}};

RegisterCommand predict_cmd{63, [](CLI::App& app) {
  auto* sub = app.add_subcommand("predict", "Class probabilities of images in a .npy file, with a checkpoint's weights");
  struct Opts {
    std::string ckpt, input, output;
    int64_t batch = 256;
    int threads = 0;
    bool raw = false;
  };
  auto o = std::make_shared<Opts>();
  sub->add_option("checkpoint", o->ckpt, "a checkpoint written by kiln train")->required()->check(CLI::ExistingFile);
  sub->add_option("--input", o->input,
                  "images .npy: u8 [N, H, W, C] raw pixels (preprocessed as in training), or f32 already preprocessed")
      ->required()->check(CLI::ExistingFile);
  sub->add_option("--output", o->output, "write the probabilities [N, K] to this .npy file");
  sub->add_option("--threads", o->threads, "worker threads (default: every core)")->check(CLI::PositiveNumber);
  sub->callback([o] {
    Loaded l = load(o->ckpt);
    Tensor x;
    try {
      x = data::read_npy(o->input);
    } catch (const std::exception& e) {
      throw InputError(e.what());
    }
    if (x.dtype() == ElemType::u8) {
      if (x.rank() == 3) x.reshape({x.dim(0), x.dim(1), x.dim(2), 1});  // MNIST-style [N, H, W]
      x = driver::preprocess_images(l.spec, x);
    }
    driver::CompiledModel m = compile_forward(l, o->batch, o->threads);
    Tensor probs;
    try {
      probs = train::predict_all(*m.program, x);
    } catch (const std::runtime_error& e) {
      throw InputError(o->input + ": " + e.what());
    }
    std::vector<int> cls = train::predicted_classes(probs);
    const int64_t k = probs.dim(1);
    const float* p = probs.data<float>();
    for (size_t i = 0; i < cls.size(); ++i) {
      std::printf("%zu: class %d  p =", i, cls[i]);
      for (int64_t j = 0; j < k; ++j) std::printf(" %.4f", p[static_cast<int64_t>(i) * k + j]);
      std::printf("\n");
    }
    if (!o->output.empty()) {
      data::write_npy(o->output, probs);
      std::printf("probabilities written to %s\n", o->output.c_str());
    }
  });
}};

}  // namespace
}  // namespace kiln::cli
