"""A plain numpy forward pass of EfficientNet-Lite0, the tests' independent reference.

Deliberately shares nothing with the generator (`generate.py`) but the weights reader: the
network layout is restated here, batch norm is applied as its own step with the stored
statistics (not folded into the convolutions), convolutions are written as shifted-window sums
over a zero-padded input, and everything runs in float64. If the generator folded a batch norm
wrongly, padded on the wrong side or wired a block wrongly, the logits disagree.

Usage: reference.py WEIGHTS.pth TENSOR.f32 [TENSOR.f32 ...]
Each tensor file holds 224*224*3 little-endian float32 values, NHWC RGB 0..255 (the model's
`data` input). Prints one JSON list of 1000 logits per tensor, one per line.
"""

import json
import sys

import numpy as np

import torch_legacy

# Batch-norm epsilon of the TensorFlow original.
BN_EPS = 1e-3
# (repeats, kernel, stride, expand ratio, output channels) per stage, stem 32 -> head 1280.
STAGES = [(1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80),
          (3, 5, 1, 6, 112), (4, 5, 2, 6, 192), (1, 3, 1, 6, 320)]


def batch_norm(x, w, prefix):
    scale = w[prefix + ".weight"] / np.sqrt(w[prefix + ".running_var"] + BN_EPS)
    return (x - w[prefix + ".running_mean"]) * scale + w[prefix + ".bias"]


def relu6(x):
    return np.clip(x, 0.0, 6.0)


def same_pad(x, k, stride):
    """TensorFlow SAME padding: output ceil(in/stride), any odd pixel goes bottom/right."""
    h, wd = x.shape[:2]
    pads = []
    for size in (h, wd):
        out = -(-size // stride)
        total = max((out - 1) * stride + k - size, 0)
        pads.append((total // 2, total - total // 2))
    return np.pad(x, pads + [(0, 0)]), -(-h // stride), -(-wd // stride)


def conv(x, weight, stride):
    """Full convolution; x is HWC, weight is torch's (out, in, kh, kw)."""
    k = weight.shape[2]
    padded, oh, ow = same_pad(x, k, stride)
    out = np.zeros((oh, ow, weight.shape[0]))
    for dy in range(k):
        for dx in range(k):
            window = padded[dy:dy + stride * oh:stride, dx:dx + stride * ow:stride, :]
            out += window @ weight[:, :, dy, dx].T
    return out


def depthwise(x, weight, stride):
    """Per-channel convolution; weight is torch's (channels, 1, kh, kw)."""
    k = weight.shape[2]
    padded, oh, ow = same_pad(x, k, stride)
    out = np.zeros((oh, ow, x.shape[2]))
    for dy in range(k):
        for dx in range(k):
            window = padded[dy:dy + stride * oh:stride, dx:dx + stride * ow:stride, :]
            out += window * weight[:, 0, dy, dx]
    return out


def forward(w, image):
    """Logits for one HWC RGB 0..255 image."""
    x = (image.astype(np.float64) - 127.0) / 128.0
    x = relu6(batch_norm(conv(x, w["_conv_stem.weight"], 2), w, "_bn0"))
    block = 0
    for repeats, k, stride, expand, _out in STAGES:
        for r in range(repeats):
            p = f"_blocks.{block}."
            inputs = x
            if expand != 1:
                x = relu6(batch_norm(conv(x, w[p + "_expand_conv.weight"], 1), w, p + "_bn0"))
            x = relu6(batch_norm(depthwise(x, w[p + "_depthwise_conv.weight"],
                                           stride if r == 0 else 1), w, p + "_bn1"))
            x = batch_norm(conv(x, w[p + "_project_conv.weight"], 1), w, p + "_bn2")
            if x.shape == inputs.shape and (r > 0 or stride == 1):
                x = x + inputs
            block += 1
    x = relu6(batch_norm(conv(x, w["_conv_head.weight"], 1), w, "_bn1"))
    pooled = x.mean(axis=(0, 1))
    return w["_fc.weight"] @ pooled + w["_fc.bias"]


def main():
    weights = {k: v.astype(np.float64) for k, v in torch_legacy.load_state_dict(sys.argv[1]).items()}
    for path in sys.argv[2:]:
        image = np.fromfile(path, dtype="<f4").reshape(224, 224, 3)
        print(json.dumps([float(v) for v in forward(weights, image)]))


if __name__ == "__main__":
    main()
