#pragma once
// The data files `kiln data prepare` knows: where the official copies live
// and their SHA-256, as published in ../shared/data/README.md and by the
// CIFAR-10 site. A source file is used only when its checksum matches.
#include <string>
#include <vector>

namespace kiln::cli {

struct DataSource {
  const char* dataset;  // "mnist", "cifar10" or "text"
  const char* file;     // file name, in <from>/<dataset>/ or downloaded
  const char* sha256;
  const char* url;      // "" when the file is only available locally
};

inline const std::vector<DataSource>& data_sources() {
  static const std::vector<DataSource> sources = {
      {"mnist", "train-images-idx3-ubyte.gz", "0b367032e93c5d0cea0925647cfdb18614af8ee15f83e6f2fc2ad904a6835971",
       "https://ossci-datasets.s3.amazonaws.com/mnist/train-images-idx3-ubyte.gz"},
      {"mnist", "train-labels-idx1-ubyte.gz", "1787548bbe0bff1ec2ecdc0ef292b02df999e2d1a6002d27500982c652b17203",
       "https://ossci-datasets.s3.amazonaws.com/mnist/train-labels-idx1-ubyte.gz"},
      {"mnist", "t10k-images-idx3-ubyte.gz", "1a1a05eab793c14bb050b398624a11b0ffd1a2953baed553b1b9bd079e2a20be",
       "https://ossci-datasets.s3.amazonaws.com/mnist/t10k-images-idx3-ubyte.gz"},
      {"mnist", "t10k-labels-idx1-ubyte.gz", "b91679a0acfe4ba0e50a2437a903084cba1f5f92592b016a25a7dfd00455798b",
       "https://ossci-datasets.s3.amazonaws.com/mnist/t10k-labels-idx1-ubyte.gz"},
      {"cifar10", "cifar-10-binary.tar.gz", "c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9b1b4ad1e4c2edc7cd1",
       "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"},
      // Class-per-folder JPEG trees (a public mirror's re-encoding), imported
      // into the binary layout.
      {"cifar10", "cifar10-train-jpeg.tar.gz", "bb033266dbb26aa71223ff120c0df4e7d3943dbd93b9e65984876854c6234931", ""},
      {"cifar10", "cifar10-test-jpeg.tar.gz", "7c54dfb40a3e53a212021475ac995e181b0a5f595c1fca0bbfa89c5bd6dda8f6", ""},
      // The King James Version as ASCII text (../shared/data/README.md): char_gpt's corpus.
      {"text", "kjv.txt.gz", "3e21b80f453d3e62f2fe17251905123054f217d20d8b9d20362c4ae0a3cd9ab9", ""},
  };
  return sources;
}

inline const DataSource& data_source(const std::string& file) {
  for (auto& s : data_sources())
    if (file == s.file) return s;
  throw std::logic_error("unknown data source " + file);
}

}  // namespace kiln::cli
