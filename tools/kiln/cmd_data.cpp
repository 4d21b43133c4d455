// kiln data prepare: puts MNIST and CIFAR-10 where the experiments expect them.
#include "tools/kiln/command.h"
#include "tools/kiln/data_prepare.h"

namespace kiln::cli {
namespace {

RegisterCommand reg{50, [](CLI::App& app) {
  auto* data = app.add_subcommand("data", "Fetch, verify and convert the data sets (MNIST, CIFAR-10)");
  data->require_subcommand(1);
  auto* prep = data->add_subcommand(
      "prepare",
      "Download (or copy with --from) MNIST and CIFAR-10, verify their SHA-256, and write them in the official "
      "layouts: <out>/mnist/*-ubyte.gz and <out>/cifar10/cifar-10-batches-bin/*.bin. Skips work already done.");
  auto opts = std::make_shared<PrepareOptions>();
  prep->add_option("--from", opts->from,
                   "Local folder holding mnist/ and cifar10/ source files (e.g. ../shared/data) instead of downloading")
      ->check(CLI::ExistingDirectory);
  prep->add_option("--out", opts->out, "Where prepared data goes (default: data/ under the repository root)");
  prep->add_option("--only", opts->only, "Prepare one data set")->check(CLI::IsMember({"mnist", "cifar10", "text"}));
  prep->callback([opts] {
    PrepareOptions o = *opts;
    if (o.out.empty()) o.out = default_data_dir();
    prepare_data(o);
  });
}};

}  // namespace
}  // namespace kiln::cli
