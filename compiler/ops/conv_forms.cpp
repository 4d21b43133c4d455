// Convolutions and pools written in terms of the 2-D ops: conv1d, maxpool1d
// and avgpool1d (over a height of one) and conv2d_transpose (the input gradient of the
// convolution it undoes). Composites: their gradients, reference and speed
// are conv2d's.
#include "compiler/ir/builder.h"
#include "compiler/ops/conv.h"
#include "compiler/ops/registry.h"
#include "compiler/ops/samples.h"

namespace kiln {

namespace {

OpError attr_error(const std::string& attr, const std::string& why) {
  OpError e("attribute '" + attr + "': " + why);
  e.attr_problems = {{attr, e.what()}};
  return e;
}

int64_t single(const Attrs& a, const char* key) {
  auto v = a.at(key).get<std::vector<int64_t>>();
  if (v.size() != 1) throw attr_error(key, "expected [" + std::string(key) + "] for the one spatial axis, got " + a.at(key).dump());
  return v[0];
}

AttrSpec layout_1d() {
  return {"layout", AttrKind::Enum, false, "NWC", "NWC, or NCW with filters [F, C, K] (as PyTorch and ONNX)", {"NWC", "NCW"}};
}

}  // namespace

static void add_conv_form_ops(OpRegistry& r) {
  r.add({.name = "conv1d", .family = "conv_forms",
         .summary = "1-D cross-correlation, NWC input, WIO filter (composite: conv2d over a height of 1)",
         .inputs = {"x", "w"},
         .attrs = {{"strides", AttrKind::IntList, false, nlohmann::json::array({1}), "[s]", {}, 1, 1024},
                   {"dilations", AttrKind::IntList, false, nlohmann::json::array({1}), "[d]", {}, 1, 1024},
                   {"padding", AttrKind::Json, false, "valid", "\"valid\", \"same\" or [left, right]"}, layout_1d()},
         .shape_rule = "x: [N,W,C], w: [K,C,F] -> [N,OW,F] (NCW: [N,C,W], [F,C,K] -> [N,F,OW])",
         .expand = [](GraphBuilder& b, const std::vector<NodeId>& in, const Attrs& a) {
           if (NodeId r = channels_first_as_last(b, "conv1d", in, a, "NWC", true); r != kNoNode) return r;
           const Shape xs = b.type(in[0]).shape, ws = b.type(in[1]).shape;
           if (xs.size() != 3 || ws.size() != 3)
             throw OpError("conv1d needs x [N, W, C] and w [K, C, F], got " + shape_str(xs) + " and " + shape_str(ws));
           nlohmann::json pad = a.at("padding");
           if (pad.is_array()) {
             if (pad.size() != 2) throw attr_error("padding", "an explicit padding is [left, right], got " + pad.dump());
             pad = {0, pad[0], 0, pad[1]};
           }
           NodeId x = b.add("reshape", {in[0]}, {{"shape", Shape{xs[0], 1, xs[1], xs[2]}}});
           NodeId w = b.add("reshape", {in[1]}, {{"shape", Shape{1, ws[0], ws[1], ws[2]}}});
           NodeId y = b.add("conv2d", {x, w}, {{"strides", {1, single(a, "strides")}},
                                               {"dilations", {1, single(a, "dilations")}}, {"padding", pad}});
           const Shape ys = b.type(y).shape;
           return b.add("reshape", {y}, {{"shape", Shape{ys[0], ys[2], ys[3]}}});
         },
         .pattern = OpPattern::contraction,
         .samples = {{{{{-1, 17, 3}}, {{3, 3, 4}}}},
                     {{{{-1, 33, 2}}, {{4, 2, 3}}}, {{"strides", {2}}, {"dilations", {2}}, {"padding", {1, 3}}}},
                     {{{{-1, 9, 2}}, {{3, 2, 2}}}, {{"padding", "same"}}},
                     {{{{-1, 2, 9}}, {{3, 2, 3}}}, {{"layout", "NCW"}, {"dilations", {2}}}}}});

  r.add({.name = "conv2d_transpose", .family = "conv_forms",
         .summary = "transposed 2-D convolution (NHWC input, filter [KH,KW,out,in]): the input gradient of the "
                    "convolution it undoes (composite)",
         .inputs = {"x", "w"},
         .attrs = {{"strides", AttrKind::IntList, false, nlohmann::json::array({1, 1}), "[sh, sw]", {}, 1, 1024},
                   {"dilations", AttrKind::IntList, false, nlohmann::json::array({1, 1}), "[dh, dw]", {}, 1, 1024},
                   {"padding", AttrKind::Json, false, "valid", "\"valid\", \"same\" or [top, left, bottom, right] (removed from the output)"},
                   {"output_padding", AttrKind::IntList, false, nlohmann::json::array({0, 0}), "[oh, ow] extra rows/columns at the bottom/right, below the stride", {}, 0, 1024},
                   {"layout", AttrKind::Enum, false, "NHWC", "NHWC, or NCHW with filters [C, F, KH, KW] (as PyTorch and ONNX)", {"NHWC", "NCHW"}}},
         .shape_rule = "x: [N,H,W,C], w: [KH,KW,F,C] -> [N,OH,OW,F]; OH = (H-1)*S + (KH-1)*D + 1 - pads + output_padding (same: H*S + output_padding)",
         .expand = [](GraphBuilder& b, const std::vector<NodeId>& in, const Attrs& a) {
           if (NodeId r = channels_first_as_last(b, "conv2d_transpose", in, a, "NHWC", true); r != kNoNode) return r;
           const Shape xs = b.type(in[0]).shape, ws = b.type(in[1]).shape;
           if (xs.size() != 4 || ws.size() != 4)
             throw OpError("conv2d_transpose needs x [N,H,W,C] and w [KH,KW,F,C], got " + shape_str(xs) + " and " + shape_str(ws));
           auto s = a.at("strides").get<std::vector<int64_t>>(), d = a.at("dilations").get<std::vector<int64_t>>();
           auto op = a.at("output_padding").get<std::vector<int64_t>>();
           if (s.size() != 2) throw attr_error("strides", "expected [sh, sw]");
           if (d.size() != 2) throw attr_error("dilations", "expected [dh, dw]");
           if (op.size() != 2 || op[0] >= s[0] || op[1] >= s[1])
             throw attr_error("output_padding", "expected [oh, ow], each below its stride, got " + a.at("output_padding").dump());
           const nlohmann::json& pad = a.at("padding");
           if (pad.is_string() && pad == "same" && (op[0] || op[1]))
             throw attr_error("output_padding", "does not combine with padding \"same\" (use an explicit padding)");
           int64_t out[2];
           for (int i = 0; i < 2; ++i) {
             const int64_t span = (ws[static_cast<size_t>(i)] - 1) * d[static_cast<size_t>(i)] + 1;
             if (pad.is_string() && pad == "same") out[i] = xs[static_cast<size_t>(i) + 1] * s[static_cast<size_t>(i)];
             else {
               int64_t pads = pad.is_array() && pad.size() == 4 ? pad[i].get<int64_t>() + pad[i + 2].get<int64_t>() : 0;
               out[i] = (xs[static_cast<size_t>(i) + 1] - 1) * s[static_cast<size_t>(i)] + span - pads;
             }
             out[i] += op[static_cast<size_t>(i)];
             if (out[i] < 1) throw attr_error("padding", "removes the whole output (" + pad.dump() + ")");
           }
           return b.add("conv2d_backprop_input", {in[0], in[1]},
                        {{"strides", s}, {"dilations", d}, {"padding", pad}, {"input_hw", {out[0], out[1]}}});
         },
         .pattern = OpPattern::contraction,
         .samples = {{{{{-1, 5, 4, 3}}, {{3, 3, 2, 3}}}},
                     {{{{-1, 4, 5, 3}}, {{3, 2, 4, 3}}}, {{"strides", {2, 2}}, {"padding", "same"}}},
                     {{{{-1, 4, 5, 3}}, {{3, 3, 4, 3}}}, {{"strides", {2, 2}}, {"padding", {1, 1, 1, 1}}, {"output_padding", {1, 0}}}},
                     {{{{-1, 4, 3, 2}}, {{3, 3, 2, 2}}}, {{"strides", {2, 3}}, {"dilations", {2, 1}}, {"padding", {1, 0, 2, 1}}}},
                     {{{{-1, 3, 4, 5}}, {{3, 2, 3, 3}}}, {{"layout", "NCHW"}, {"strides", {2, 2}}}}}});
}

// maxpool1d and avgpool1d: the 2-D pools over a height of one.
static void add_pool1d_ops(OpRegistry& r) {
  for (bool max : {true, false}) {
    std::vector<AttrSpec> attrs = {{"pool", AttrKind::IntList, false, nlohmann::json::array({2}), "[p] window", {}, 1, 1024},
                                   {"strides", AttrKind::IntList, false, nullptr, "[s] (default: the window)", {}, 1, 1024},
                                   {"padding", AttrKind::Json, false, "valid", "\"valid\", \"same\" or [left, right]"},
                                   {"ceil_mode", AttrKind::Bool, false, false, "a partial last window counts"},
                                   layout_1d()};
    if (max) attrs.push_back({"dilations", AttrKind::IntList, false, nlohmann::json::array({1}), "[d]", {}, 1, 1024});
    else attrs.push_back({"count_include_pad", AttrKind::Bool, false, false, "divide by the taps on the padding too"});
    r.add({.name = max ? "maxpool1d" : "avgpool1d", .family = "conv_forms",
           .summary = max ? "max over windows, NWC (composite: maxpool2d over a height of 1)"
                          : "mean over windows, NWC (composite: avgpool2d over a height of 1)",
           .inputs = {"x"}, .attrs = attrs, .shape_rule = "x: [N,W,C] -> [N,OW,C]",
           .expand = [max](GraphBuilder& b, const std::vector<NodeId>& in, const Attrs& a) {
             if (NodeId r = channels_first_as_last(b, max ? "maxpool1d" : "avgpool1d", in, a, "NWC", false); r != kNoNode)
               return r;
             const Shape xs = b.type(in[0]).shape;
             if (xs.size() != 3) throw OpError("needs an NWC input [N, W, C], got " + shape_str(xs));
             nlohmann::json pad = a.at("padding");
             if (pad.is_array()) {
               if (pad.size() != 2) throw attr_error("padding", "an explicit padding is [left, right], got " + pad.dump());
               pad = {0, pad[0], 0, pad[1]};
             }
             Attrs a2 = {{"pool", {1, single(a, "pool")}}, {"padding", pad}, {"ceil_mode", a.at("ceil_mode")}};
             if (a.contains("strides")) a2["strides"] = {1, single(a, "strides")};
             if (max) a2["dilations"] = {1, single(a, "dilations")};
             else a2["count_include_pad"] = a.at("count_include_pad");
             NodeId x = b.add("reshape", {in[0]}, {{"shape", Shape{xs[0], 1, xs[1], xs[2]}}});
             NodeId y = b.add(max ? "maxpool2d" : "avgpool2d", {x}, a2);
             const Shape ys = b.type(y).shape;
             return b.add("reshape", {y}, {{"shape", Shape{ys[0], ys[2], ys[3]}}});
           },
           .pattern = OpPattern::opaque,
           .kinks = max ? Kinks::gradient_steps : Kinks::none,
           .samples = {{{{{-1, 17, 3}}}},
                       {{{{-1, 33, 2}}}, {{"pool", {3}}, {"strides", {2}}, {"padding", {1, 1}}, {"ceil_mode", true}}},
                       {{{{-1, 2, 9}}}, {{"layout", "NCW"}, {"pool", {3}}}}}});
  }
}

void register_conv_forms_family(OpRegistry& r) {
  add_conv_form_ops(r);
  add_pool1d_ops(r);
}

}  // namespace kiln
