// ONNX DFT and STFT. The signal length is static, so a DFT is two matmuls
// with constant cosine and sine matrices (the real and imaginary parts), and
// an STFT gathers its frames with constant indices first.
#include <cmath>

#include "compiler/frontend/onnx/convert.h"

namespace kiln::onnx {

using json = nlohmann::json;

namespace {

// x: [..., n, 1 or 2] with the signal along axis `axis`; the transform of
// length `length` (zero-padded or cut) along it: [..., K, 2].
std::string dft(NodeCtx& c, const std::string& x_in, int64_t axis, int64_t length, bool inverse, bool onesided) {
  TensorType t = c.kiln_type(x_in);
  int64_t r = t.rank();
  if (r < 3 || has_open_dim(t.shape)) unsupported("a DFT input that is not a static [batch, ..., n, 1|2]");
  int64_t parts = t.shape.back();
  if (parts != 1 && parts != 2) invalid("the last dimension must be 1 (real) or 2 (complex)");
  if (axis < 1 || axis > r - 2) invalid("axis " + std::to_string(axis) + " is not a signal axis");
  std::string x = x_in;
  int64_t n = t.shape[static_cast<size_t>(axis)];
  if (length < n) {
    x = c.emit("slice", {x}, {{"starts", {0}}, {"ends", {length}}, {"axes", {axis}}});
  } else if (length > n) {
    std::vector<int64_t> pads(static_cast<size_t>(2 * r), 0);
    pads[static_cast<size_t>(r + axis)] = length - n;
    x = c.emit("pad", {x}, {{"pads", ints_json(pads)}});
  }
  std::vector<int64_t> perm(static_cast<size_t>(r));
  for (int64_t i = 0; i < r; ++i) perm[static_cast<size_t>(i)] = i;
  std::swap(perm[static_cast<size_t>(axis)], perm[static_cast<size_t>(r - 2)]);
  bool moved = axis != r - 2;
  if (moved) x = c.emit("transpose", {x}, {{"perm", ints_json(perm)}});  // [..., N, parts]
  auto part = [&](int64_t k) {
    return c.emit("squeeze", {c.emit("slice", {x}, {{"starts", {k}}, {"ends", {k + 1}}, {"axes", {r - 1}}})}, {{"axes", {r - 1}}});
  };
  std::string re = part(0), im = parts == 2 ? part(1) : "";
  int64_t k_out = onesided ? length / 2 + 1 : length;
  DType dt = t.dtype;
  interp::Value cosm{dt, {length, k_out}, {}}, sinm{dt, {length, k_out}, {}};
  double scale = inverse ? 1.0 / static_cast<double>(length) : 1.0;
  for (int64_t i = 0; i < length; ++i)
    for (int64_t k = 0; k < k_out; ++k) {
      double th = 2 * M_PI * static_cast<double>((i * k) % length) / static_cast<double>(length);
      cosm.data.push_back(std::cos(th) * scale);
      sinm.data.push_back(std::sin(th) * scale);
    }
  std::string cm = c.constant(cosm), sm = c.constant(sinm);
  // Forward: sum x e^(-i th) = (re C + im S) + i (im C - re S); inverse: e^(+i th) / N.
  std::string out_re = c.emit("matmul", {re, cm}), out_im = c.emit("neg", {c.emit("matmul", {re, sm})});
  if (inverse) out_im = c.emit("neg", {out_im});
  if (!im.empty()) {
    std::string im_s = c.emit("matmul", {im, sm});
    out_re = c.emit(inverse ? "sub" : "add", {out_re, im_s});
    out_im = c.emit("add", {out_im, c.emit("matmul", {im, cm})});
  }
  std::string y = c.emit("concat", {c.emit("unsqueeze", {out_re}, {{"axes", {r - 1}}}), c.emit("unsqueeze", {out_im}, {{"axes", {r - 1}}})},
                         {{"axis", r - 1}});
  if (moved) y = c.emit("transpose", {y}, {{"perm", ints_json(perm)}});
  return y;
}

int64_t one_int(NodeCtx& c, int i, const char* what) {
  std::vector<int64_t> v = c.need_ints(i, what);
  if (v.size() != 1) invalid(std::string(what) + " must hold one value");
  return v[0];
}

}  // namespace

void register_signal(ConverterTable& t) {
  t["DFT"] = [](NodeCtx& c) {
    int64_t axis = c.attr_int("axis", 1);
    bool inverse = c.attr_int("inverse", 0) != 0, onesided = c.attr_int("onesided", 0) != 0;
    if (axis < 0) axis += c.rank(0);
    if (inverse && onesided) unsupported("an inverse one-sided DFT");
    int64_t length = c.has(1) ? one_int(c, 1, "dft_length") : c.shape(0)[static_cast<size_t>(std::max<int64_t>(axis, 0))];
    c.out(0, dft(c, c.in(0), axis, length, inverse, onesided));
  };
  t["STFT"] = [](NodeCtx& c) {
    bool onesided = c.attr_int("onesided", 1) != 0;
    Shape s = c.shape(0);  // [batch, length, 1|2]
    if (s.size() != 3 || has_open_dim(s)) unsupported("an STFT signal that is not a static [batch, length, 1|2]");
    int64_t step = one_int(c, 1, "frame_step");
    int64_t frame = c.has(3) ? one_int(c, 3, "frame_length") : c.has(2) ? c.shape(2)[0] : 0;
    if (frame <= 0 || step <= 0 || frame > s[1]) invalid("frame_length and frame_step must fit the signal");
    int64_t frames = (s[1] - frame) / step + 1;
    interp::Value idx{DType::i32, {frames, frame}, {}};
    for (int64_t f = 0; f < frames; ++f)
      for (int64_t i = 0; i < frame; ++i) idx.data.push_back(static_cast<double>(f * step + i));
    std::string x = c.emit("gather", {c.in(0), c.constant(idx)}, {{"axis", 1}});  // [batch, frames, frame, 1|2]
    if (c.has(2)) x = c.emit("mul", {x, c.emit("unsqueeze", {c.in(2)}, {{"axes", {1}}})});
    c.out(0, dft(c, x, 2, frame, false, onesided));
  };
}

}  // namespace kiln::onnx
