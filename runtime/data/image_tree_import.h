#pragma once
// Imports a class-per-folder image tree packed in a tar archive (gzip, bzip2,
// xz or plain: libarchive detects it), e.g. cifar10-train-jpeg.tar.gz holding
// train/<class>/NNNN.jpg, into labeled u8 images.
//
// Rules (so the result never depends on archive order or the machine):
//  - An image is a regular member whose name ends in .jpg, .jpeg or .png (any
//    case); its class is the name of the folder holding it. Other members are
//    ignored. Every image must sit under the same root folder (e.g. "train/").
//  - Class order: when the folder names are exactly the ten CIFAR-10 classes,
//    the official CIFAR-10 order (label 0 = airplane ... 9 = truck); otherwise
//    the folder names sorted bytewise.
//  - Record order: by label, then by member path (bytewise), so
//    train/airplane/0001.jpg comes first.
//  - Every image must decode (JPEG or PNG, sniffed from the bytes), and all
//    must have the same width and height. A corrupt image is an error naming
//    the archive and the member.
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "runtime/data/labeled_images.h"

namespace kiln::data {

struct ImageTreeImport {
  LabeledImages data;                // images u8 [N, H, W, 3], labels i32 [N], class_names
  std::vector<std::string> members;  // archive member of each record, in record order
  std::string root;                  // the common root folder ("train"), may be empty
};

// progress(done, total) is called from the importing thread as images decode.
// threads <= 0: one per hardware thread.
ImageTreeImport import_image_tree(const std::string& archive_path,
                                  const std::function<void(int64_t, int64_t)>& progress = {}, int threads = 0);
// The same for an archive held in memory; `name` stands for it in errors.
ImageTreeImport import_image_tree_from_memory(std::span<const uint8_t> archive_bytes, const std::string& name,
                                              const std::function<void(int64_t, int64_t)>& progress = {},
                                              int threads = 0);

}  // namespace kiln::data
