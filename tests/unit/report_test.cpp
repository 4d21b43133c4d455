// Metrics formatting, the confusion matrix, and gnuplot PNGs.
#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "runtime/report/metrics.h"
#include "runtime/report/plot.h"

using namespace kiln::report;

TEST_CASE("an epoch prints in the seed's format") {
  EpochMetrics m;
  m.epoch = 1, m.seconds = 3.6912, m.train_loss = 3.0481, m.train_acc = 0.1942, m.test_loss = 2.04, m.test_acc = 0.228;
  CHECK(seed_format(m) ==
        "Epoch : 1 , Epoch Time : 3.69 , Train Loss : 3.048 , Train Acc : 0.194 , Test Loss : 2.040 , Test Acc : 0.2280");
  m.step_seconds = 3.5071;  // the steps' own share, beside the wall time (the peers' scripts read the prefix)
  CHECK(seed_format(m) == "Epoch : 1 , Epoch Time : 3.69 , Step Time : 3.51 , Train Loss : 3.048 , Train Acc : 0.194 , "
                          "Test Loss : 2.040 , Test Acc : 0.2280");
}

TEST_CASE("metrics round-trip through JSON and write CSV with empty cells for missing values") {
  EpochMetrics a;
  a.epoch = 1, a.seconds = 2, a.train_loss = 0.5, a.train_acc = 0.75;
  auto back = history_from_json(to_json({a}));
  REQUIRE(back.size() == 1);
  CHECK(back[0].train_acc == 0.75);
  CHECK(std::isnan(back[0].test_loss));
  CHECK(std::isnan(back[0].step_seconds));
  CHECK(to_csv({a}) == "epoch,seconds,train_loss,train_acc,val_loss,val_acc,test_loss,test_acc,step_seconds\n"
                       "1,2.000000,0.500000,0.750000,,,,,\n");
  a.step_seconds = 1.5;
  back = history_from_json(to_json({a}));
  CHECK(back[0].step_seconds == 1.5);
  CHECK(to_csv({a}).ends_with("1,2.000000,0.500000,0.750000,,,,,1.500000\n"));
}

TEST_CASE("confusion matrix counts, accuracy and text") {
  ConfusionMatrix cm(3);
  cm.add(0, 0), cm.add(0, 0), cm.add(1, 2), cm.add(2, 2);
  CHECK(cm.at(0, 0) == 2);
  CHECK(cm.at(1, 2) == 1);
  CHECK(cm.total() == 4);
  CHECK(cm.accuracy() == doctest::Approx(0.75));
  CHECK_THROWS_AS(cm.add(3, 0), std::out_of_range);
  std::string text = cm.to_text({"a", "b", "c"});
  CHECK(text.find("a          2     0     0") != std::string::npos);
}

TEST_CASE("gnuplot draws curves and a heat map as PNG files") {
  namespace fs = std::filesystem;
  fs::path dir = fs::temp_directory_path() / "kiln-report-test";
  fs::create_directories(dir);
  std::vector<EpochMetrics> h(3);
  for (int i = 0; i < 3; ++i) {
    h[i].epoch = i + 1, h[i].seconds = 1, h[i].train_loss = 3 - i, h[i].train_acc = 0.2 + 0.1 * i;
    h[i].test_loss = 3.2 - i, h[i].test_acc = 0.18 + 0.1 * i;
  }
  plot_training_curves(h, "test run", (dir / "curves.png").string());
  ConfusionMatrix cm(2);
  cm.add(0, 0), cm.add(1, 0), cm.add(1, 1);
  plot_confusion(cm, {"no", "yes"}, "cm", (dir / "cm.png").string());
  for (const char* f : {"curves.png", "cm.png"}) {
    std::ifstream in(dir / f, std::ios::binary);
    char magic[8] = {};
    in.read(magic, 8);
    CHECK(std::string(magic + 1, 3) == "PNG");
    CHECK(fs::file_size(dir / f) > 2000);
  }
  fs::remove_all(dir);
}

#include "runtime/report/progress.h"

TEST_CASE("progress renders done/total, rate and ETA, and plain mode prints at most one line per 10%") {
  CHECK(Progress::format_duration(12.34) == "12.3s");
  CHECK(Progress::format_duration(65) == "1:05");
  CHECK(Progress::format_duration(3725) == "1:02:05");
  char* buf = nullptr;
  size_t len = 0;
  FILE* mem = open_memstream(&buf, &len);
  {
    Progress p("epoch 1", 100, mem);
    p.set_interactive(false);
    for (int i = 1; i <= 100; ++i) p.update(i, i * 64, 2.5);
    CHECK(p.render(50, 3200, 2.5).find("epoch 1 [============>           ] 50/100") == 0);
    p.finish();
  }
  std::fclose(mem);
  std::string out(buf, len);
  free(buf);
  int lines = 0;
  for (char c : out) lines += c == '\n';
  CHECK(lines == 9);  // 10% .. 90%
  CHECK(out.find("loss 2.5000") != std::string::npos);
}
