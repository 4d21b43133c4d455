#!/usr/bin/env python3
"""Writes the model zoo, graphs/zoo/<model>.json (kiln.graph/1).

The graphs are plain JSON a user could have written by hand; this script
exists because ResNet-20 is 9 blocks of the same four layers and MobileNet
repeats its inverted residual. `--check` exits 1 when a committed graph
differs from what the script writes (CI runs it).

  lenet5           LeNet-5 on Fashion-MNIST (28x28x1), tanh and average pooling
  resnet20         ResNet-20 for CIFAR-10 (He et al. 2016), option A shortcuts: 269,722 params
  mobilenet_small  MobileNetV2-style inverted residuals for CIFAR-10, ReLU6 as clip
  char_gpt         a character-level transformer: 4 pre-norm blocks, d_model 128,
                   4 heads, context 128, learned positions, GELU MLP, causal attention
"""
import argparse
import json
import sys
from pathlib import Path

RELU6 = {"kind": "clip", "min": 0, "max": 6}


def classifier_tail(nodes, logits, labels="labels"):
    nodes += [
        {"name": "loss", "op": "sparse_softmax_cross_entropy", "inputs": [logits, labels]},
        {"name": "correct", "op": "correct_count", "inputs": [logits, labels]},
        {"name": "probabilities", "op": "softmax", "inputs": [logits]},
    ]
    return {"logits": logits, "loss": "loss", "correct": "correct", "probabilities": "probabilities"}


def model(name, description, seed, inputs, nodes, outputs, **extra):
    """A kiln.graph/1 document."""
    return {"format": "kiln.graph/1", "name": name, "description": description, "seed": seed, "inputs": inputs,
            **extra, "nodes": nodes, "outputs": outputs}


def cifar_model(name, description, seed, nodes):
    """Global average pooling, dense 10 and the classifier outputs after `nodes`."""
    nodes.append({"name": "fc", "layer": "dense", "units": 10})
    return model(name, description, seed, image_inputs(32, 32, 3, "CIFAR-10 images scaled to [0, 1]"), nodes,
                 classifier_tail(nodes, "fc"))


def image_inputs(h, w, c, what):
    return {"x": {"shape": [-1, h, w, c], "description": what},
            "labels": {"shape": [-1], "dtype": "i32", "description": "classes 0-9"}}


def lenet5():
    nodes = [
        {"name": "c1", "layer": "conv2d", "inputs": ["x"], "filters": 6, "kernel": 5, "padding": "same", "activation": "tanh"},
        {"name": "s2", "layer": "avgpool2d", "pool": 2},
        {"name": "c3", "layer": "conv2d", "filters": 16, "kernel": 5, "activation": "tanh"},
        {"name": "s4", "layer": "avgpool2d", "pool": 2},
        {"name": "flat", "layer": "flatten"},
        {"name": "f5", "layer": "dense", "units": 120, "activation": "tanh"},
        {"name": "f6", "layer": "dense", "units": 84, "activation": "tanh"},
        {"name": "f7", "layer": "dense", "units": 10},
    ]
    return model("lenet5", "LeNet-5 (LeCun et al. 1998) for Fashion-MNIST: 5x5 convolutions 1->6 (same padding) and "
                 "6->16, tanh, 2x2 average pooling, dense 120-84-10.", 5,
                 image_inputs(28, 28, 1, "Fashion-MNIST images scaled to [0, 1]"), nodes, classifier_tail(nodes, "f7"))


def conv_bn(nodes, name, x, filters, stride, relu):
    nodes.append({"name": name, "layer": "conv2d", "inputs": [x], "filters": filters, "kernel": 3, "strides": stride,
                  "padding": "same", "use_bias": False, "kernel_init": "he_normal"})
    nodes.append({"name": name + "_bn", "layer": "batch_norm", "activation": "relu" if relu else "linear"})
    return name + "_bn"


def resnet20():
    nodes = []
    x = conv_bn(nodes, "stem", "x", 16, 1, True)
    channels = 16
    for stage, width in enumerate([16, 32, 64]):
        for block in range(3):
            name = f"s{stage + 1}b{block + 1}"
            stride = 2 if stage > 0 and block == 0 else 1
            h = conv_bn(nodes, name + "_conv1", x, width, stride, True)
            h = conv_bn(nodes, name + "_conv2", h, width, 1, False)
            shortcut = x
            if stride != 1 or width != channels:
                # Option A: every other pixel, the new channels zeros (no params).
                pad = (width - channels) // 2
                nodes.append({"name": name + "_sub", "op": "slice", "inputs": [x], "starts": [0, 0], "ends": [1 << 30, 1 << 30],
                              "axes": [1, 2], "steps": [2, 2]})
                nodes.append({"name": name + "_shortcut", "op": "pad", "inputs": [name + "_sub"],
                              "pads": [0, 0, 0, pad, 0, 0, 0, pad]})
                shortcut = name + "_shortcut"
            nodes.append({"name": name, "op": "relu", "inputs": [{"op": "add", "inputs": [h, shortcut]}]})
            x, channels = name, width
    nodes.append({"name": "pool", "layer": "global_avgpool2d", "inputs": [x]})
    return cifar_model("resnet20", "ResNet-20 for CIFAR-10 (He et al. 2016, section 4.2): a 3x3 stem, 3 stages of 3 "
                       "basic blocks with 16/32/64 channels, batch norm after every convolution, option A shortcuts "
                       "(stride-2 subsampling, zero channels), global average pooling, dense 10. 269,722 trainable "
                       "params.", 20, nodes)


def mobilenet_small():
    nodes = []
    nodes.append({"name": "stem", "layer": "conv2d", "inputs": ["x"], "filters": 16, "kernel": 3, "padding": "same",
                  "use_bias": False, "kernel_init": "he_normal"})
    nodes.append({"name": "stem_bn", "layer": "batch_norm", "activation": RELU6})
    x, channels = "stem_bn", 16
    # (expansion, output channels, repeats, first stride), MobileNetV2's table cut to 32x32 inputs.
    for i, (t, c, n, s) in enumerate([(1, 16, 1, 1), (4, 24, 2, 2), (4, 32, 3, 2), (4, 64, 2, 2), (4, 96, 1, 1)]):
        for r in range(n):
            name = f"ir{i + 1}_{r + 1}"
            stride = s if r == 0 else 1
            h = x
            if t != 1:
                nodes.append({"name": name + "_expand", "layer": "conv2d", "inputs": [h], "filters": channels * t,
                              "kernel": 1, "use_bias": False, "kernel_init": "he_normal"})
                nodes.append({"name": name + "_expand_bn", "layer": "batch_norm", "activation": RELU6})
                h = name + "_expand_bn"
            nodes.append({"name": name + "_dw", "layer": "depthwise_conv2d", "inputs": [h], "kernel": 3, "strides": stride,
                          "padding": "same", "use_bias": False, "kernel_init": "he_normal"})
            nodes.append({"name": name + "_dw_bn", "layer": "batch_norm", "activation": RELU6})
            nodes.append({"name": name + "_project", "layer": "conv2d", "filters": c, "kernel": 1, "use_bias": False})
            nodes.append({"name": name + "_project_bn", "layer": "batch_norm"})
            out = name + "_project_bn"
            if stride == 1 and c == channels:
                nodes.append({"name": name, "op": "add", "inputs": [out, x]})
                out = name
            x, channels = out, c
    nodes.append({"name": "head", "layer": "conv2d", "inputs": [x], "filters": 320, "kernel": 1, "use_bias": False})
    nodes.append({"name": "head_bn", "layer": "batch_norm", "activation": RELU6})
    nodes.append({"name": "pool", "layer": "global_avgpool2d"})
    nodes.append({"name": "drop", "layer": "dropout", "rate": 0.2})
    return cifar_model("mobilenet_small", "A MobileNetV2-style CIFAR-10 model (Sandler et al. 2018): inverted "
                       "residuals (1x1 expand, 3x3 depthwise, 1x1 linear projection, residual where shapes allow), "
                       "batch norm, ReLU6 as clip(0, 6), dropout before the classifier.", 2, nodes)


def char_gpt(layers=4, d_model=128, heads=4, context=128, vocab=256):
    nodes = [
        {"name": "tok", "layer": "embedding", "inputs": ["tokens"], "vocab": vocab, "dim": d_model,
         "embeddings_init": {"kind": "normal", "stddev": 0.02}},
        {"name": "h0", "op": "add", "inputs": ["tok", "positions"]},
    ]
    h = "h0"
    for i in range(1, layers + 1):
        b = f"block{i}"
        nodes += [
            {"name": b + "_ln1", "layer": "layer_norm", "inputs": [h]},
            {"name": b + "_attn", "layer": "multi_head_attention", "heads": heads, "causal": True, "dropout": 0.1},
            {"name": b + "_res1", "op": "add", "inputs": [h, {"layer": "dropout", "rate": 0.1, "inputs": [b + "_attn"]}]},
            {"name": b + "_ln2", "layer": "layer_norm"},
            {"name": b + "_mlp_up", "layer": "dense", "units": 4 * d_model, "activation": "gelu"},
            {"name": b + "_mlp_down", "layer": "dense", "units": d_model},
            {"name": b + "_mlp_drop", "layer": "dropout", "rate": 0.1},
            {"name": b, "op": "add", "inputs": [b + "_res1", b + "_mlp_drop"]},
        ]
        h = b
    nodes += [
        {"name": "ln_f", "layer": "layer_norm", "inputs": [h]},
        {"name": "logits", "layer": "dense", "units": vocab},
        # Mean over every position of -log p(target): the log-probability each target picks.
        {"name": "log_probs", "op": "log_softmax", "inputs": ["logits"], "axis": -1},
        {"name": "picked", "op": "gather_elements", "axis": -1,
         "inputs": ["log_probs", {"op": "unsqueeze", "inputs": ["targets"], "axes": [-1]}]},
        {"name": "loss", "op": "neg", "inputs": [{"op": "reduce_mean", "inputs": ["picked"]}]},
        {"name": "probabilities", "op": "softmax", "inputs": ["logits"], "axis": -1},
    ]
    return model("char_gpt", f"A character-level GPT (Radford et al. 2018, pre-layer-norm): byte embedding ({vocab}) plus a "
                 f"learned positional embedding, {layers} blocks of causal {heads}-head self-attention and a GELU "
                 f"MLP (4x), each as x + dropout(f(layer_norm(x))), a final layer norm and an untied output "
                 f"layer; context {context}, d_model {d_model}. Loss: mean cross-entropy per character.", 7,
                 {"tokens": {"shape": [-1, context], "dtype": "i32", "description": "byte ids of a window"},
                  "targets": {"shape": [-1, context], "dtype": "i32", "description": "the next byte of each position"}},
                 nodes, {"logits": "logits", "loss": "loss", "probabilities": "probabilities"},
                 params={"positions": {"shape": [context, d_model], "init": {"kind": "normal", "stddev": 0.02}}})


MODELS = {"lenet5": lenet5, "resnet20": resnet20, "mobilenet_small": mobilenet_small, "char_gpt": char_gpt}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent.parent / "graphs" / "zoo"))
    ap.add_argument("--check", action="store_true", help="compare with the committed graphs instead of writing")
    args = ap.parse_args()
    out = Path(args.out)
    stale = []
    for name, make in MODELS.items():
        text = json.dumps(make(), indent=1) + "\n"
        path = out / f"{name}.json"
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(str(path))
        else:
            out.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    if stale:
        print("gen_zoo: out of date (run tools/gen_zoo.py): " + ", ".join(stale), file=sys.stderr)
        return 1
    print(f"gen_zoo: {'checked' if args.check else 'wrote'} {len(MODELS)} graphs in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
