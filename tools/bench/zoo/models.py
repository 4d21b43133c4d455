"""PyTorch twins of kiln's zoo graphs (graphs/zoo/*.json), layer for layer.

Architectures start from tools/bench/onnx_roundtrip.py and are checked against
the kiln graphs; where they differed, the graph wins:
  * "same" padding is TensorFlow's (what kiln's conv2d implements): a stride-2
    3x3 convolution on an even input pads 0 rows/columns before and 1 after
    (torch's padding=1 would pad 1 on both sides and sample other pixels);
  * LeNet-5 flattens NHWC (H, W, C order) as kiln does, so f5's rows line up;
  * mobilenet_small has all of the graph's blocks (ir4_2, ir5_1, the 1x1 head
    to 320 channels, dropout 0.2), char_gpt is the full graph (4 blocks,
    context 128, d_model 128), with separate q/k/v projections and no key
    bias (kiln's multi_head_attention).
Initializers are kiln's (compiler/frontend/layers*.cpp, runtime/init):
  glorot_uniform: U(+-sqrt(6 / (fan_in + fan_out))), he_normal: N(0, 2 / fan_in)
  (a plain normal, not truncated), with Keras' fans of a [kh, kw, cin/groups,
  cout] kernel: fan_in = kh kw cin/groups, fan_out = kh kw cout. torch's
  [cout, cin/groups, kh, kw] weights give the same fans, so nn.init's
  xavier_uniform_ and kaiming_normal_(fan_in, relu) are exactly kiln's.
  Defaults: dense/conv kernels glorot_uniform, biases zeros, embeddings
  normal(0.02 in char_gpt), batch/layer norm gamma 1, beta 0; batch norm
  momentum 0.1, epsilon 1e-5 (running variance unbiased, as PyTorch);
  layer norm epsilon 1e-5; GELU exact (erf).
"""
import torch
import torch.nn as nn
import torch.nn.functional as F


def glorot_(w):
    nn.init.xavier_uniform_(w)
    return w


def he_normal_(w):
    nn.init.kaiming_normal_(w, mode="fan_in", nonlinearity="relu")  # std sqrt(2 / fan_in), untruncated
    return w


def dense(cin, cout, bias=True):  # kiln dense: glorot_uniform kernel, zero bias
    m = nn.Linear(cin, cout, bias=bias)
    glorot_(m.weight)
    if bias:
        nn.init.zeros_(m.bias)
    return m


class Conv(nn.Module):
    """kiln conv2d / depthwise_conv2d (NHWC there, NCHW here) with TF "same" or "valid" padding."""

    def __init__(self, cin, cout, k, stride=1, padding="same", groups=1, bias=True, init="glorot_uniform"):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride, 0, groups=groups, bias=bias)
        (he_normal_ if init == "he_normal" else glorot_)(self.conv.weight)
        if bias:
            nn.init.zeros_(self.conv.bias)
        self.k, self.stride, self.same = k, stride, padding == "same"

    def forward(self, x):
        if self.same:
            pads = []
            for size in (x.shape[3], x.shape[2]):  # F.pad order: (left, right, top, bottom)
                out = -(-size // self.stride)
                total = max((out - 1) * self.stride + self.k - size, 0)
                pads += [total // 2, total - total // 2]
            if any(pads):
                x = F.pad(x, pads)
        return self.conv(x)


def bn(c):  # kiln batch_norm defaults: momentum 0.1, epsilon 1e-5, gamma 1, beta 0 (PyTorch's)
    return nn.BatchNorm2d(c, eps=1e-5, momentum=0.1)


# ------------------------------------------------------------------ lenet5
class LeNet5(nn.Module):  # graphs/zoo/lenet5.json
    def __init__(self):
        super().__init__()
        self.c1 = Conv(1, 6, 5, padding="same")
        self.c3 = Conv(6, 16, 5, padding="valid")
        self.f5, self.f6, self.f7 = dense(400, 120), dense(120, 84), dense(84, 10)

    def forward(self, x):  # x [N, 1, 28, 28]
        x = F.avg_pool2d(torch.tanh(self.c1(x)), 2)
        x = F.avg_pool2d(torch.tanh(self.c3(x)), 2)
        x = x.permute(0, 2, 3, 1).flatten(1)  # kiln's flatten of NHWC
        return self.f7(torch.tanh(self.f6(torch.tanh(self.f5(x)))))


# ------------------------------------------------------------------ resnet20
class Block(nn.Module):  # basic block, option A shortcut (stride-2 subsampling, zero channels split before/after)
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.c1, self.b1 = Conv(cin, cout, 3, stride, bias=False, init="he_normal"), bn(cout)
        self.c2, self.b2 = Conv(cout, cout, 3, 1, bias=False, init="he_normal"), bn(cout)
        self.pad, self.stride = cout - cin, stride

    def forward(self, x):
        y = self.b2(self.c2(F.relu(self.b1(self.c1(x)))))
        s = x[:, :, ::self.stride, ::self.stride] if self.stride > 1 else x
        if self.pad:  # kiln pads [0,0,0,p, 0,0,0,p] on NHWC: p zero channels before and p after
            s = F.pad(s, (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))
        return F.relu(y + s)


class ResNet20(nn.Module):  # graphs/zoo/resnet20.json: 269,722 params
    def __init__(self):
        super().__init__()
        self.stem, self.bn = Conv(3, 16, 3, bias=False, init="he_normal"), bn(16)
        blocks, cin = [], 16
        for cout, stride in ((16, 1), (32, 2), (64, 2)):
            for i in range(3):
                blocks.append(Block(cin, cout, stride if i == 0 else 1))
                cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.fc = dense(64, 10)

    def forward(self, x):
        x = self.blocks(F.relu(self.bn(self.stem(x))))
        return self.fc(x.mean((2, 3)))


# ------------------------------------------------------------------ mobilenet_small
def relu6(x):  # kiln: clip(0, 6)
    return torch.clamp(x, 0.0, 6.0)


class InvertedResidual(nn.Module):
    """1x1 expand (he_normal) + BN + ReLU6, 3x3 depthwise (he_normal) + BN + ReLU6,
    1x1 linear projection (glorot_uniform, kiln's default) + BN, residual when stride 1 and cin == cout."""

    def __init__(self, cin, cout, expand, stride):
        super().__init__()
        mid = cin * expand
        self.expand = None
        if expand != 1:
            self.expand, self.expand_bn = Conv(cin, mid, 1, bias=False, init="he_normal"), bn(mid)
        self.dw, self.dw_bn = Conv(mid, mid, 3, stride, groups=mid, bias=False, init="he_normal"), bn(mid)
        self.project, self.project_bn = Conv(mid, cout, 1, bias=False), bn(cout)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        y = relu6(self.expand_bn(self.expand(x))) if self.expand is not None else x
        y = self.project_bn(self.project(relu6(self.dw_bn(self.dw(y)))))
        return x + y if self.residual else y


class MobileNetSmall(nn.Module):  # graphs/zoo/mobilenet_small.json
    BLOCKS = ((16, 16, 1, 1),  # ir1_1 (cin, cout, expansion, stride)
              (16, 24, 4, 2), (24, 24, 4, 1),  # ir2_1, ir2_2
              (24, 32, 4, 2), (32, 32, 4, 1), (32, 32, 4, 1),  # ir3_1..3
              (32, 64, 4, 2), (64, 64, 4, 1),  # ir4_1, ir4_2
              (64, 96, 4, 1))  # ir5_1

    def __init__(self, dropout=0.2):
        super().__init__()
        self.stem, self.stem_bn = Conv(3, 16, 3, bias=False, init="he_normal"), bn(16)
        self.body = nn.Sequential(*[InvertedResidual(*b) for b in self.BLOCKS])
        self.head, self.head_bn = Conv(96, 320, 1, bias=False), bn(320)  # glorot_uniform (default)
        self.drop = nn.Dropout(dropout)
        self.fc = dense(320, 10)

    def forward(self, x):
        x = self.body(relu6(self.stem_bn(self.stem(x))))
        x = relu6(self.head_bn(self.head(x))).mean((2, 3))
        return self.fc(self.drop(x))


# ------------------------------------------------------------------ char_gpt
class CausalSelfAttention(nn.Module):
    """kiln multi_head_attention: q, k, v, output projections [d, d], glorot_uniform each;
    biases (zeros) on q, v and output, none on k; softmax(q k^T / sqrt(dk) + causal mask),
    dropout on the attention weights."""

    def __init__(self, d, heads, dropout):
        super().__init__()
        self.q, self.k, self.v, self.o = dense(d, d), dense(d, d, bias=False), dense(d, d), dense(d, d)
        self.heads, self.dropout = heads, dropout

    def forward(self, x):
        b, t, d = x.shape
        h = self.heads
        q, k, v = (p(x).view(b, t, h, d // h).transpose(1, 2) for p in (self.q, self.k, self.v))
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0, is_causal=True)
        return self.o(y.transpose(1, 2).reshape(b, t, d))


class GPTBlock(nn.Module):  # pre-layer-norm: x + drop(attn(ln1 x)); x + drop(down(gelu(up(ln2 x))))
    def __init__(self, d, heads, dropout):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(d, eps=1e-5), nn.LayerNorm(d, eps=1e-5)
        self.attn = CausalSelfAttention(d, heads, dropout)
        self.up, self.down = dense(d, 4 * d), dense(4 * d, d)
        self.drop1, self.drop2 = nn.Dropout(dropout), nn.Dropout(dropout)

    def forward(self, x):
        x = x + self.drop1(self.attn(self.ln1(x)))
        return x + self.drop2(self.down(F.gelu(self.up(self.ln2(x)))))  # exact GELU


class CharGPT(nn.Module):  # graphs/zoo/char_gpt.json
    def __init__(self, vocab=256, d=128, heads=4, blocks=4, context=128, dropout=0.1):
        super().__init__()
        self.tok = nn.Embedding(vocab, d)
        nn.init.normal_(self.tok.weight, 0.0, 0.02)
        self.pos = nn.Parameter(torch.empty(context, d).normal_(0.0, 0.02))  # "positions": normal(0.02)
        self.blocks = nn.ModuleList([GPTBlock(d, heads, dropout) for _ in range(blocks)])
        self.ln_f = nn.LayerNorm(d, eps=1e-5)
        self.logits = dense(d, vocab)  # untied

    def forward(self, tokens):  # [N, T] int64 -> logits [N, T, vocab]
        x = self.tok(tokens) + self.pos[: tokens.shape[1]]
        for blk in self.blocks:
            x = blk(x)
        return self.logits(self.ln_f(x))


MODELS = {"lenet5": LeNet5, "resnet20": ResNet20, "mobilenet_small": MobileNetSmall, "char_gpt": CharGPT}


def param_count(model):
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


if __name__ == "__main__":  # parameter counts and a shape check
    torch.manual_seed(0)
    for name, cls in MODELS.items():
        m = cls().eval()
        x = torch.randint(0, 256, (2, 128)) if name == "char_gpt" else torch.rand(2, 1 if name == "lenet5" else 3,
                                                                                   28 if name == "lenet5" else 32,
                                                                                   28 if name == "lenet5" else 32)
        with torch.no_grad():
            y = m(x)
        print(f"{name:16s} params {param_count(m):9,d}  output {tuple(y.shape)}")
