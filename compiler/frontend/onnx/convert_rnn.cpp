// ONNX RNN, GRU and LSTM, unrolled at import over their static sequence
// length: every step is a few matmuls and elementwise gates, so kiln fuses,
// differentiates and trains them like any other graph.
#include "compiler/frontend/onnx/convert.h"

namespace kiln::onnx {

using json = nlohmann::json;

namespace {

enum class Cell { rnn, gru, lstm };

struct Activation {
  std::string name;
  double alpha = 0, beta = 0;
};

std::string activate(NodeCtx& c, const Activation& a, const std::string& x) {
  DType dt = c.kiln_type(x).dtype;
  const std::string& n = a.name;
  if (n == "Tanh") return c.emit("tanh", {x});
  if (n == "Sigmoid") return c.emit("sigmoid", {x});
  if (n == "Relu") return c.emit("relu", {x});
  if (n == "LeakyRelu") return c.emit("leaky_relu", {x}, {{"alpha", a.alpha}});
  if (n == "HardSigmoid") return c.emit("hard_sigmoid", {x}, {{"alpha", a.alpha}, {"beta", a.beta}});
  if (n == "Elu") return c.emit("elu", {x}, {{"alpha", a.alpha}});
  if (n == "Softsign") return c.emit("div", {x, c.emit("add", {c.scalar(1, dt), c.emit("abs", {x})})});
  if (n == "Softplus") return c.emit("softplus", {x});
  if (n == "Affine") return c.emit("add", {c.emit("mul", {x, c.scalar(a.alpha, dt)}), c.scalar(a.beta, dt)});
  if (n == "ScaledTanh") return c.emit("mul", {c.emit("tanh", {c.emit("mul", {x, c.scalar(a.beta, dt)})}), c.scalar(a.alpha, dt)});
  unsupported("activation '" + n + "'");
}

// Rows [part*H, (part+1)*H) of a [G*H, ...] matrix (or entries of a vector).
std::string rows(NodeCtx& c, const std::string& m, int64_t part, int64_t h) {
  return c.emit("slice", {m}, {{"starts", {part * h}}, {"ends", {(part + 1) * h}}, {"axes", {0}}});
}

std::string direction_slice(NodeCtx& c, const std::string& x, int64_t d) {
  return c.emit("squeeze", {c.emit("slice", {x}, {{"starts", {d}}, {"ends", {d + 1}}, {"axes", {0}}})}, {{"axes", {0}}});
}

void recurrent(NodeCtx& c, Cell cell) {
  const int64_t gates = cell == Cell::rnn ? 1 : cell == Cell::gru ? 3 : 4;
  int64_t hidden = c.attr_int("hidden_size", 0);
  std::string direction = c.attr_string("direction", "forward");
  int64_t layout = c.attr_int("layout", 0);
  double clip = c.attr_float("clip", 0.0);
  bool clipped = c.has_attr("clip");
  bool lbr = cell == Cell::gru && c.attr_int("linear_before_reset", 0) != 0;
  if (cell == Cell::lstm && c.attr_int("input_forget", 0) != 0) unsupported("LSTM input_forget");
  std::vector<std::string> names = c.attr_strings("activations");
  std::vector<double> alphas = c.attr_floats("activation_alpha"), betas = c.attr_floats("activation_beta");
  int64_t dirs = direction == "bidirectional" ? 2 : 1;
  if (direction != "forward" && direction != "reverse" && direction != "bidirectional") invalid("direction '" + direction + "'");
  size_t per_dir = cell == Cell::rnn ? 1 : cell == Cell::gru ? 2 : 3;
  std::vector<Activation> acts;
  for (size_t i = 0; i < names.size(); ++i) {
    Activation a{names[i]};
    // Defaults as ONNX's activation ops have them.
    if (a.name == "LeakyRelu") a.alpha = 0.01;
    if (a.name == "HardSigmoid") a.alpha = 0.2, a.beta = 0.5;
    if (a.name == "Elu") a.alpha = 1.0;
    if (i < alphas.size()) a.alpha = alphas[i];
    if (i < betas.size()) a.beta = betas[i];
    acts.push_back(a);
  }
  if (acts.empty()) {
    for (int64_t d = 0; d < dirs; ++d) {
      if (cell == Cell::rnn) acts.push_back({"Tanh"});
      if (cell == Cell::gru) acts.push_back({"Sigmoid"}), acts.push_back({"Tanh"});
      if (cell == Cell::lstm) acts.push_back({"Sigmoid"}), acts.push_back({"Tanh"}), acts.push_back({"Tanh"});
    }
  }
  if (acts.size() != per_dir * static_cast<size_t>(dirs)) invalid("activations needs " + std::to_string(per_dir * dirs) + " names");

  Shape xs = c.shape(0);
  if (xs.size() != 3 || has_open_dim(xs)) unsupported("a recurrent input that is not a static [seq, batch, input]");
  std::string x = c.in(0);
  if (layout == 1) x = c.emit("transpose", {x}, {{"perm", {1, 0, 2}}}), std::swap(xs[0], xs[1]);
  int64_t steps = xs[0], batch = xs[1];
  // The weights' shapes, checked before anything indexes them.
  auto expect = [&](int i, const char* what, Shape want) {
    if (c.has(i) && c.shape(i) != want)
      invalid(std::string(what) + " is " + shape_str(c.shape(i)) + ", expected " + shape_str(want));
  };
  if (c.rank(1) != 3 || c.rank(2) != 3) invalid("W and R must be [directions, gates x hidden, ...]");
  if (hidden <= 0) hidden = c.shape(2)[2];
  if (hidden <= 0) invalid("hidden_size must be positive");
  expect(1, "W", {dirs, gates * hidden, xs[2]});
  expect(2, "R", {dirs, gates * hidden, hidden});
  expect(3, "B", {dirs, 2 * gates * hidden});
  expect(5, "initial_h", layout == 1 ? Shape{batch, dirs, hidden} : Shape{dirs, batch, hidden});
  if (cell == Cell::lstm) {
    expect(6, "initial_c", layout == 1 ? Shape{batch, dirs, hidden} : Shape{dirs, batch, hidden});
    expect(7, "P", {dirs, 3 * hidden});
  }
  if (c.has(4)) {  // sequence_lens: only the full length is supported
    const interp::Value* lens = c.known(4);
    bool full = lens != nullptr;
    if (lens)
      for (double v : lens->data) full = full && static_cast<int64_t>(v) == steps;
    if (!full) unsupported("sequence_lens shorter than the sequence (or computed at run time)");
  }
  DType dt = c.dtype(0);
  auto initial = [&](int idx) -> std::string {
    if (!c.has(idx)) return "";
    std::string v = c.in(idx);
    return layout == 1 ? c.emit("transpose", {v}, {{"perm", {1, 0, 2}}}) : v;
  };
  std::string h0 = initial(5), c0 = cell == Cell::lstm ? initial(6) : "";
  std::string zeros_state = c.constant(interp::Value{dt, {batch, hidden}, std::vector<double>(static_cast<size_t>(batch * hidden), 0.0)});

  std::vector<std::string> y_dirs, h_dirs, c_dirs;
  for (int64_t d = 0; d < dirs; ++d) {
    bool reverse = direction == "reverse" || d == 1;
    const Activation* act = &acts[static_cast<size_t>(d) * per_dir];
    std::string w = direction_slice(c, c.in(1), d), r = direction_slice(c, c.in(2), d);
    std::string wb, rb;
    if (c.has(3)) {
      std::string b = direction_slice(c, c.in(3), d);
      wb = c.emit("slice", {b}, {{"starts", {0}}, {"ends", {gates * hidden}}, {"axes", {0}}});
      rb = c.emit("slice", {b}, {{"starts", {gates * hidden}}, {"ends", {2 * gates * hidden}}, {"axes", {0}}});
    }
    std::vector<std::string> peep;
    if (cell == Cell::lstm && c.has(7)) {
      std::string p = direction_slice(c, c.in(7), d);
      for (int64_t k = 0; k < 3; ++k) peep.push_back(rows(c, p, k, hidden));  // i, o, f
    }
    std::string h = h0.empty() ? zeros_state : direction_slice(c, h0, d);
    std::string cs = cell != Cell::lstm ? "" : c0.empty() ? zeros_state : direction_slice(c, c0, d);
    std::vector<std::string> ys(static_cast<size_t>(steps));
    auto clip_to = [&](const std::string& v) {
      if (!clipped) return v;
      return c.emit("minimum", {c.emit("maximum", {v, c.scalar(-clip, dt)}), c.scalar(clip, dt)});
    };
    for (int64_t s = 0; s < steps; ++s) {
      int64_t t = reverse ? steps - 1 - s : s;
      std::string xt = c.emit("squeeze", {c.emit("slice", {x}, {{"starts", {t}}, {"ends", {t + 1}}, {"axes", {0}}})}, {{"axes", {0}}});
      std::string xw = c.emit("matmul", {xt, w}, {{"transpose_b", true}});  // [batch, G*H]
      if (!wb.empty()) xw = c.emit("add", {xw, wb});
      auto part = [&](const std::string& m, int64_t k) {
        return c.emit("slice", {m}, {{"starts", {k * hidden}}, {"ends", {(k + 1) * hidden}}, {"axes", {1}}});
      };
      if (cell == Cell::rnn) {
        std::string hr = c.emit("matmul", {h, r}, {{"transpose_b", true}});
        if (!rb.empty()) hr = c.emit("add", {hr, rb});
        h = activate(c, act[0], clip_to(c.emit("add", {xw, hr})));
      } else if (cell == Cell::gru) {  // gates z, r, h
        std::string hr = c.emit("matmul", {h, r}, {{"transpose_b", true}});
        if (!rb.empty()) hr = c.emit("add", {hr, rb});
        std::string z = activate(c, act[0], clip_to(c.emit("add", {part(xw, 0), part(hr, 0)})));
        std::string rg = activate(c, act[0], clip_to(c.emit("add", {part(xw, 1), part(hr, 1)})));
        std::string cand;
        if (lbr) {
          cand = c.emit("add", {part(xw, 2), c.emit("mul", {rg, part(hr, 2)})});
        } else {
          std::string rh = c.emit("matmul", {c.emit("mul", {rg, h}), rows(c, r, 2, hidden)}, {{"transpose_b", true}});
          if (!rb.empty()) rh = c.emit("add", {rh, rows(c, rb, 2, hidden)});
          cand = c.emit("add", {part(xw, 2), rh});
        }
        std::string hh = activate(c, act[1], clip_to(cand));
        // (1 - z) * hh + z * h
        h = c.emit("add", {c.emit("mul", {c.emit("sub", {c.scalar(1, dt), z}), hh}), c.emit("mul", {z, h})});
      } else {  // gates i, o, f, c
        std::string hr = c.emit("matmul", {h, r}, {{"transpose_b", true}});
        if (!rb.empty()) hr = c.emit("add", {hr, rb});
        std::string g = c.emit("add", {xw, hr});
        auto with_peep = [&](const std::string& v, int k, const std::string& state) {
          return peep.empty() ? v : c.emit("add", {v, c.emit("mul", {peep[static_cast<size_t>(k)], state})});
        };
        std::string i = activate(c, act[0], clip_to(with_peep(part(g, 0), 0, cs)));
        std::string f = activate(c, act[0], clip_to(with_peep(part(g, 2), 2, cs)));
        std::string cand = activate(c, act[1], clip_to(part(g, 3)));
        cs = c.emit("add", {c.emit("mul", {f, cs}), c.emit("mul", {i, cand})});
        std::string o = activate(c, act[0], clip_to(with_peep(part(g, 1), 1, cs)));
        h = c.emit("mul", {o, activate(c, act[2], cs)});
      }
      ys[static_cast<size_t>(t)] = c.emit("unsqueeze", {h}, {{"axes", {0}}});
    }
    y_dirs.push_back(c.emit("unsqueeze", {steps == 1 ? ys[0] : c.emit("concat", ys, {{"axis", 0}})}, {{"axes", {1}}}));
    h_dirs.push_back(c.emit("unsqueeze", {h}, {{"axes", {0}}}));
    if (cell == Cell::lstm) c_dirs.push_back(c.emit("unsqueeze", {cs}, {{"axes", {0}}}));
  }
  auto join = [&](const std::vector<std::string>& v, int64_t axis) {
    return v.size() == 1 ? v[0] : c.emit("concat", v, {{"axis", axis}});
  };
  std::string y = join(y_dirs, 1), yh = join(h_dirs, 0), yc = c_dirs.empty() ? "" : join(c_dirs, 0);
  if (layout == 1) {
    y = c.emit("transpose", {y}, {{"perm", {2, 0, 1, 3}}});
    yh = c.emit("transpose", {yh}, {{"perm", {1, 0, 2}}});
    if (!yc.empty()) yc = c.emit("transpose", {yc}, {{"perm", {1, 0, 2}}});
  }
  c.emit_out(0, "add", {y, c.scalar(0, dt)});
  c.emit_out(1, "add", {yh, c.scalar(0, dt)});
  if (cell == Cell::lstm) c.emit_out(2, "add", {yc, c.scalar(0, dt)});
}

}  // namespace

void register_rnn(ConverterTable& t) {
  t["RNN"] = [](NodeCtx& c) { recurrent(c, Cell::rnn); };
  t["GRU"] = [](NodeCtx& c) { recurrent(c, Cell::gru); };
  t["LSTM"] = [](NodeCtx& c) { recurrent(c, Cell::lstm); };
}

}  // namespace kiln::onnx
