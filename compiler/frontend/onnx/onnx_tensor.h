#pragma once
// ONNX TensorProto <-> kiln values and dtypes.
#include <string>

#include "compiler/interp/interpreter.h"
#include "onnx/onnx_pb.h"

namespace kiln::onnx {

// Throws ConvertError for a dtype kiln lacks, external data, or a size that
// disagrees with the dims; `what` names the tensor in the message.
interp::Value value_of_tensor(const ::onnx::TensorProto& t, const std::string& what);
int32_t onnx_of_dtype(DType t);

}  // namespace kiln::onnx
