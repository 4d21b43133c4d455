// Reference kernels of conv2d, its two backprop ops, maxpool2d and its
// gradient: tiny hand examples, then independent naive formulas.
#include "tests/unit/interp_helpers.h"

using namespace kiln;
using namespace kiln::interp_test;

namespace {

// 1x3x3x1 image 1..9 and a 2x2 filter [[1,2],[3,4]].
Value image3x3() { return val({1, 3, 3, 1}, {1, 2, 3, 4, 5, 6, 7, 8, 9}); }
Value filter2x2() { return val({2, 2, 1, 1}, {1, 2, 3, 4}); }

Value conv(const Value& x, const Value& w, std::vector<int> strides, const char* padding) {
  OpGraph t;
  NodeId xi = t.in("x", x), wi = t.in("w", w);
  return t.run(t.op("conv2d", {xi, wi}, {{"strides", strides}, {"padding", padding}}));
}

// Deterministic, irregular test values (no RNG needed).
std::vector<double> ramp(size_t n, double scale) {
  std::vector<double> d(n);
  for (size_t i = 0; i < n; ++i) d[i] = scale * std::sin(1.3 * static_cast<double>(i) + 0.7);
  return d;
}

// An independent conv: pad the input explicitly into a zero canvas, then a
// valid cross-correlation. TF "same": total pad = max(0, (ceil(H/S)-1)*S + K - H),
// top = pad/2, the rest at the bottom.
struct NaiveConv {
  int n, h, w, c, kh, kw, f, s;
  bool same;
  int oh() const { return same ? (h + s - 1) / s : (h - kh) / s + 1; }
  int ow() const { return same ? (w + s - 1) / s : (w - kw) / s + 1; }
  int top() const { return same ? std::max(0, (oh() - 1) * s + kh - h) / 2 : 0; }
  int left() const { return same ? std::max(0, (ow() - 1) * s + kw - w) / 2 : 0; }
  std::vector<double> run(const std::vector<double>& x, const std::vector<double>& wt) const {
    int ph = (oh() - 1) * s + kh, pw = (ow() - 1) * s + kw;  // canvas covering every window
    std::vector<double> canvas(static_cast<size_t>(n * ph * pw * c), 0.0);
    for (int b = 0; b < n; ++b)
      for (int i = 0; i < h; ++i)
        for (int j = 0; j < w; ++j)
          for (int ci = 0; ci < c; ++ci) {
            int ci_row = i + top(), ci_col = j + left();
            if (ci_row >= ph || ci_col >= pw) continue;  // valid: trailing rows no window reaches
            canvas[static_cast<size_t>(((b * ph + ci_row) * pw + ci_col) * c + ci)] =
                x[static_cast<size_t>(((b * h + i) * w + j) * c + ci)];
          }
    std::vector<double> y(static_cast<size_t>(n * oh() * ow() * f), 0.0);
    for (int b = 0; b < n; ++b)
      for (int oy = 0; oy < oh(); ++oy)
        for (int ox = 0; ox < ow(); ++ox)
          for (int fo = 0; fo < f; ++fo) {
            double acc = 0;
            for (int a = 0; a < kh; ++a)
              for (int bb = 0; bb < kw; ++bb)
                for (int ci = 0; ci < c; ++ci)
                  acc += canvas[static_cast<size_t>(((b * ph + oy * s + a) * pw + ox * s + bb) * c + ci)] *
                         wt[static_cast<size_t>(((a * kw + bb) * c + ci) * f + fo)];
            y[static_cast<size_t>(((b * oh() + oy) * ow() + ox) * f + fo)] = acc;
          }
    return y;
  }
};

double dot(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

}  // namespace

TEST_CASE("interp conv2d valid - stride 1 - on a 3x3 image with a 2x2 filter") {
  // out[i][j] = 1 x[i][j] + 2 x[i][j+1] + 3 x[i+1][j] + 4 x[i+1][j+1]
  check_value(conv(image3x3(), filter2x2(), {1, 1}, "valid"), {1, 2, 2, 1}, {37, 47, 67, 77});
}

TEST_CASE("interp conv2d same - stride 1: the extra pad goes to the bottom and right") {
  // Pad 1 in each spatial dim, all of it after the image: the last row/column
  // see zeros below/right of them, e.g. out[0][2] = 1*3 + 3*6 = 21, out[2][2] = 9.
  check_value(conv(image3x3(), filter2x2(), {1, 1}, "same"), {1, 3, 3, 1}, {37, 47, 21, 67, 77, 33, 23, 26, 9});
}

TEST_CASE("interp conv2d with stride 2 - valid and same") {
  check_value(conv(image3x3(), filter2x2(), {2, 2}, "valid"), {1, 1, 1, 1}, {37});
  check_value(conv(image3x3(), filter2x2(), {2, 2}, "same"), {1, 2, 2, 1}, {37, 21, 23, 9});
}

TEST_CASE("interp conv2d same with a 3x3 filter pads one on every side") {
  // All-ones filter: each output is the sum of its 3x3 neighbourhood inside the image.
  Value ones = val({3, 3, 1, 1}, std::vector<double>(9, 1.0));
  check_value(conv(image3x3(), ones, {1, 1}, "same"), {1, 3, 3, 1}, {12, 21, 16, 27, 45, 33, 24, 39, 28});
}

TEST_CASE("interp conv2d with channels and filters matches a naive padded convolution") {
  for (bool same : {false, true})
    for (int s : {1, 2}) {
      NaiveConv nc{2, 5, 4, 2, 3, 2, 3, s, same};
      auto x = ramp(static_cast<size_t>(2 * 5 * 4 * 2), 1.0), w = ramp(static_cast<size_t>(3 * 2 * 2 * 3), 0.5);
      INFO("same=" << same << " stride=" << s);
      Value y = conv(val({2, 5, 4, 2}, x), val({3, 2, 2, 3}, w), {s, s}, same ? "same" : "valid");
      check_value(y, {2, nc.oh(), nc.ow(), 3}, nc.run(x, w), 1e-12);
    }
}

TEST_CASE("interp conv2d backprop ops equal the transposed Jacobian of a naive conv") {
  // conv is linear in x and in w, so dx[e] = <dy, conv(unit_e, w)> and
  // dw[e] = <dy, conv(x, unit_e)>: each entry is computed by the naive conv.
  for (bool same : {false, true})
    for (int s : {1, 2}) {
      INFO("same=" << same << " stride=" << s);
      NaiveConv nc{2, 5, 4, 2, 3, 2, 3, s, same};
      const char* pad = same ? "same" : "valid";
      size_t nx = 2 * 5 * 4 * 2, nw = 3 * 2 * 2 * 3, ny = static_cast<size_t>(2 * nc.oh() * nc.ow() * 3);
      auto x = ramp(nx, 1.0), w = ramp(nw, 0.5), dy = ramp(ny, 0.25);
      std::vector<double> dx(nx), dw(nw);
      for (size_t e = 0; e < nx; ++e) {
        std::vector<double> unit(nx, 0.0);
        unit[e] = 1;
        dx[e] = dot(dy, nc.run(unit, w));
      }
      for (size_t e = 0; e < nw; ++e) {
        std::vector<double> unit(nw, 0.0);
        unit[e] = 1;
        dw[e] = dot(dy, nc.run(x, unit));
      }
      OpGraph t;
      NodeId dyi = t.in("dy", val({2, nc.oh(), nc.ow(), 3}, dy)), wi = t.in("w", val({3, 2, 2, 3}, w));
      NodeId xi = t.in("x", val({2, 5, 4, 2}, x));
      check_value(t.run(t.op("conv2d_backprop_input", {dyi, wi},
                             {{"strides", {s, s}}, {"padding", pad}, {"input_hw", {5, 4}}})),
                  {2, 5, 4, 2}, dx, 1e-12);
      check_value(t.run(t.op("conv2d_backprop_filter", {xi, dyi},
                             {{"strides", {s, s}}, {"padding", pad}, {"filter_hw", {3, 2}}})),
                  {3, 2, 2, 3}, dw, 1e-12);
    }
}

TEST_CASE("interp conv2d_backprop_input on the 3x3 example - by hand") {
  // valid 2x2 conv of a 3x3 image; dy = 1 at output (0,0) only: dx is the filter in the top-left corner.
  OpGraph t;
  NodeId dy = t.in("dy", val({1, 2, 2, 1}, {1, 0, 0, 0}));
  NodeId w = t.in("w", filter2x2());
  check_value(t.run(t.op("conv2d_backprop_input", {dy, w}, {{"input_hw", {3, 3}}})), {1, 3, 3, 1},
              {1, 2, 0, 3, 4, 0, 0, 0, 0});
  // dy = 1 everywhere: each pixel gets the sum of the taps that touch it.
  NodeId ones = t.in("ones", val({1, 2, 2, 1}, {1, 1, 1, 1}));
  check_value(t.run(t.op("conv2d_backprop_input", {ones, w}, {{"input_hw", {3, 3}}})), {1, 3, 3, 1},
              {1, 3, 2, 4, 10, 6, 3, 7, 4});
  // filter gradient with dy = 1 everywhere: dw[a][b] = sum of the 2x2 block of x at offset (a, b).
  NodeId x = t.in("x", image3x3());
  check_value(t.run(t.op("conv2d_backprop_filter", {x, ones}, {{"filter_hw", {2, 2}}})), {2, 2, 1, 1},
              {12, 16, 24, 28});
}

TEST_CASE("interp maxpool2d 2x2 windows on a 4x4 image - per channel") {
  OpGraph t;
  // channel 0: 0..15 row-major; channel 1: its negation.
  std::vector<double> d;
  for (int i = 0; i < 16; ++i) d.push_back(i), d.push_back(-i);
  NodeId x = t.in("x", val({1, 4, 4, 2}, d));
  check_value(t.run(t.op("maxpool2d", {x}, {{"pool", {2, 2}}})), {1, 2, 2, 2}, {5, 0, 7, -2, 13, -8, 15, -10});
}

TEST_CASE("interp maxpool2d same padding: padded positions never win - even over negative values") {
  OpGraph t;
  NodeId x = t.in("x", val({1, 3, 3, 1}, {-1, -2, -3, -4, -5, -6, -7, -8, -9}));
  // ceil(3/2) = 2 windows per dim; the pad row/column (bottom/right) holds no value.
  check_value(t.run(t.op("maxpool2d", {x}, {{"pool", {2, 2}}, {"padding", "same"}})), {1, 2, 2, 1}, {-1, -3, -7, -9});
}

TEST_CASE("interp maxpool2d with stride 1 overlapping windows and an odd size (valid drops the rest)") {
  OpGraph t;
  NodeId x = t.in("x", val({1, 3, 3, 1}, {1, 9, 2, 3, 4, 5, 8, 6, 7}));
  check_value(t.run(t.op("maxpool2d", {x}, {{"pool", {2, 2}}, {"strides", {1, 1}}})), {1, 2, 2, 1}, {9, 9, 8, 7});
  check_value(t.run(t.op("maxpool2d", {x}, {{"pool", {2, 2}}})), {1, 1, 1, 1}, {9});
}

TEST_CASE("interp maxpool2d_grad routes each window's gradient to its first maximum") {
  OpGraph t;
  // Window 1 (top-left) is a three-way tie of 5s: the first in row-major order wins.
  // Window 2 (top-right) has its max at the bottom-left.
  NodeId x = t.in("x", val({1, 2, 4, 1}, {5, 5, 1, 2, 1, 5, 9, 3}));
  NodeId dy = t.in("dy", val({1, 1, 2, 1}, {10, 20}));
  check_value(t.run(t.op("maxpool2d_grad", {x, dy}, {{"pool", {2, 2}}})), {1, 2, 4, 1}, {10, 0, 0, 0, 0, 0, 20, 0});
}

TEST_CASE("interp maxpool2d_grad accumulates where overlapping windows share a maximum") {
  OpGraph t;
  NodeId x = t.in("x", val({1, 3, 3, 1}, {1, 9, 2, 3, 4, 5, 8, 6, 7}));
  NodeId dy = t.in("dy", val({1, 2, 2, 1}, {1, 2, 3, 4}));
  // windows' maxima: 9 (twice, dy 1 + 2), 8 (dy 3), 7 (dy 4)
  check_value(t.run(t.op("maxpool2d_grad", {x, dy}, {{"pool", {2, 2}}, {"strides", {1, 1}}})), {1, 3, 3, 1},
              {0, 3, 0, 0, 0, 0, 3, 0, 4});
}

TEST_CASE("interp maxpool2d_grad with same padding never routes to the padding") {
  OpGraph t;
  NodeId x = t.in("x", val({1, 3, 3, 1}, {-1, -2, -3, -4, -5, -6, -7, -8, -9}));
  NodeId dy = t.in("dy", val({1, 2, 2, 1}, {1, 2, 3, 4}));
  check_value(t.run(t.op("maxpool2d_grad", {x, dy}, {{"pool", {2, 2}}, {"padding", "same"}})), {1, 3, 3, 1},
              {1, 0, 2, 0, 0, 0, 3, 0, 4});
}
