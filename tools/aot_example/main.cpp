// An ahead-of-time compiled training program at work: the CIFAR-10 MLP
// (graphs/mlp_cifar10.json with the e2 spec), compiled by `kiln compile -o`
// at build time into mlp.o, linked here with kiln_runtime only (no compiler,
// no LLVM). It reads one CIFAR-10 batch file, initializes the params as
// `kiln train` does (spec seed), and runs STEPS train steps over seeded,
// shuffled mini-batches, printing each step's loss with %.9g.
//
//   kiln_aot_example DATA_DIR [STEPS [THREADS]]    (DATA_DIR: data/cifar10)
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>

#include "mlp.h"  // generated: mlp_train_step, ..., mlp_program
#include "runtime/aot_program.h"
#include "runtime/data/batcher.h"
#include "runtime/data/cifar.h"
#include "runtime/data/preprocess.h"
#include "runtime/file_io.h"
#include "runtime/thread_pool.h"

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s DATA_DIR [STEPS [THREADS]]  (DATA_DIR holds cifar-10-batches-bin/)\n", argv[0]);
    return 2;
  }
  const std::string dir = argv[1];
  const int steps = argc > 2 ? std::atoi(argv[2]) : 5;
  const int threads = argc > 3 ? std::atoi(argv[3]) : 2;
  try {
    std::string file = dir + "/cifar-10-batches-bin/data_batch_1.bin";
    if (!kiln::file_exists(file)) file = dir + "/data_batch_1.bin";
    kiln::data::LabeledImages raw = kiln::data::load_cifar10_batch(file);
    kiln::data::Dataset data = kiln::data::Dataset::make(kiln::data::per_image_standardize(raw.images),
                                                         kiln::data::one_hot(raw.labels, 10));

    const kiln_aot_program* desc = mlp_program();
    kiln::ThreadPool pool(threads);
    kiln::Program program(kiln::aot_program_info(desc), &pool);
    kiln::aot_initialize(program, desc);  // the spec's seed, as `kiln train`
    std::printf("# %s (%s): %lld params bytes, max batch %lld\n", desc->name, desc->compiled_for,
                static_cast<long long>(desc->param_bytes), static_cast<long long>(desc->max_batch));

    const kiln::EntryInfo* step = program.entry("train_step");
    kiln::data::Batcher batcher(data, {.batch_size = desc->max_batch, .shuffle = true, .seed = 1, .prefetch = false});
    const float lr = 0.001f;  // the e2 spec's
    for (int s = 1; s <= steps; ++s) {
      auto batch = batcher.next();
      if (!batch) batch = batcher.next();  // next epoch
      std::vector<const void*> in;
      for (const kiln::TensorInfo& t : step->inputs)
        in.push_back(t.name == "x" ? batch->features().raw() : t.name == "lr" ? static_cast<const void*>(&lr) : batch->labels().raw());
      float loss = 0;
      alignas(8) unsigned char other[64];  // "correct": a scalar of some type
      std::vector<void*> out;
      for (const kiln::TensorInfo& t : step->outputs) out.push_back(t.name == "loss" ? static_cast<void*>(&loss) : other);
      program.run("train_step", batch->size(), in, out);
      std::printf("step %d loss %.9g\n", s, static_cast<double>(loss));
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "kiln_aot_example: %s\n", e.what());
    return 1;
  }
  return 0;
}
