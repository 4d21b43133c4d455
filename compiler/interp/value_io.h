#pragma once
// Conversions between the interpreter's Values and the runtime's Tensors
// (what .npy files, data sets and checkpoints hold).
#include "compiler/interp/interpreter.h"
#include "runtime/tensor.h"

namespace kiln::interp {

Value to_value(const Tensor& t);          // u8 becomes i32 (the graph has no u8)
Tensor to_tensor(const Value& v);         // keeps v's dtype
DType to_dtype(ElemType t);
ElemType to_elem_type(DType t);

}  // namespace kiln::interp
