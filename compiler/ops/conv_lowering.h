#pragma once
// Loop-IR helpers shared by the conv and pool lowerings, and the conv family's
// lowering (conv_lowering.cpp).
#include <functional>

#include "compiler/lower/lower_ctx.h"
#include "compiler/ops/conv.h"

namespace kiln {

// Loops over the window of output position (oh, ow), clipped to the input so
// padding contributes nothing: body(ih, iw, kh, kw).
void window_loops(lower::KernelBuilder& k, const ConvGeometry& g, lower::E oh, lower::E ow,
                  const std::function<void(lower::E, lower::E, lower::E, lower::E)>& body);

class OpRegistry;
// Sets the lowering of conv2d and its two gradient ops.
void add_conv_lowering(OpRegistry& r);

}  // namespace kiln
