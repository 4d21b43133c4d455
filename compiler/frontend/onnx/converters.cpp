// The table of ONNX op converters, filled by family.
#include "compiler/frontend/onnx/convert.h"

namespace kiln::onnx {

const ConverterTable& converters() {
  static const ConverterTable table = [] {
    ConverterTable t;
    register_elementwise(t);
    register_tensor(t);
    register_reduce(t);
    register_nn(t);
    register_shape_ops(t);
    register_resize(t);
    register_index(t);
    register_rnn(t);
    register_signal(t);
    return t;
  }();
  return table;
}

}  // namespace kiln::onnx
