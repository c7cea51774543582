"""EfficientNet-Lite0 as a list of inference layers with batch norm folded in.

The checkpoint (lukemelas-style names, converted from TensorFlow) stores every convolution
without bias followed by a batch norm. At inference a batch norm is an affine map per channel,
so it folds into the convolution: weight * scale, bias = beta - mean * scale, with
scale = gamma / sqrt(var + eps) and TensorFlow's eps = 1e-3 (130 channels have a stored
variance of exactly 0, so eps decides their scale).

The result, `layers(state)`, is a topologically ordered list of `Layer`s in NHWC terms that
both writers consume: `dlr_model.py` (TVM graph JSON + params for libdlr) and `onnx_model.py`.
Weights come out already in the layout the C kernels read (HWIO for convolutions, (in, out)
for 1x1 convolutions and the classifier), all float32.
"""

from dataclasses import dataclass, field

import numpy as np

BN_EPS = 1e-3
INPUT_SIZE = 224
NUM_CLASSES = 1000
# (repeats, kernel, stride of the first block, expand ratio, output channels) per stage.
STAGES = [(1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80),
          (3, 5, 1, 6, 112), (4, 5, 2, 6, 192), (1, 3, 1, 6, 320)]
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280


@dataclass
class Layer:
    """One operation. `inputs` are indices of earlier layers (-1 is the graph input)."""

    name: str
    # normalize | conv | depthwise | pointwise | add | mean_pool | dense
    op: str
    inputs: list
    # Output shape, NHWC (or [1, C] after pooling).
    shape: list
    relu6: bool = False
    stride: int = 1
    weight: np.ndarray = None
    bias: np.ndarray = None
    params: dict = field(default_factory=dict)


def _fold(state, bn):
    gamma, beta = state[bn + ".weight"], state[bn + ".bias"]
    mean, var = state[bn + ".running_mean"], state[bn + ".running_var"]
    scale = gamma.astype(np.float64) / np.sqrt(var.astype(np.float64) + BN_EPS)
    return scale, beta - mean * scale


def _conv_hwio(state, conv, bn):
    weight = state[conv + ".weight"].astype(np.float64)  # (out, in, k, k)
    scale, bias = _fold(state, bn)
    weight = weight * scale[:, None, None, None]
    return weight.transpose(2, 3, 1, 0).astype(np.float32), bias.astype(np.float32)


def _depthwise_hwc(state, conv, bn):
    weight = state[conv + ".weight"].astype(np.float64)[:, 0]  # (c, k, k)
    scale, bias = _fold(state, bn)
    weight = weight * scale[:, None, None]
    return weight.transpose(1, 2, 0).astype(np.float32), bias.astype(np.float32)


def _pointwise_io(state, conv, bn):
    weight, bias = _conv_hwio(state, conv, bn)
    return weight[0, 0], bias  # (in, out)


def _out(size, stride):
    return -(-size // stride)


def layers(state):
    """The network as folded layers, in order."""
    out = []

    def add(layer):
        out.append(layer)
        return len(out) - 1

    size = INPUT_SIZE
    x = add(Layer("normalize", "normalize", [-1], [1, size, size, 3]))
    size = _out(size, 2)
    w, b = _conv_hwio(state, "_conv_stem", "_bn0")
    x = add(Layer("stem", "conv", [x], [1, size, size, STEM_CHANNELS], True, 2, w, b))
    channels = STEM_CHANNELS
    block = 0
    for repeats, k, first_stride, expand, out_channels in STAGES:
        for r in range(repeats):
            p = f"_blocks.{block}."
            stride = first_stride if r == 0 else 1
            block_in, in_channels = x, channels
            if expand != 1:
                w, b = _pointwise_io(state, p + "_expand_conv", p + "_bn0")
                channels = in_channels * expand
                x = add(Layer(f"block{block}_expand", "pointwise", [x],
                              [1, size, size, channels], True, 1, w, b))
            w, b = _depthwise_hwc(state, p + "_depthwise_conv", p + "_bn1")
            if w.shape[0] != k:
                raise ValueError(f"block {block}: kernel {w.shape[0]}, layout says {k}")
            size = _out(size, stride)
            x = add(Layer(f"block{block}_depthwise", "depthwise", [x],
                          [1, size, size, channels], True, stride, w, b))
            w, b = _pointwise_io(state, p + "_project_conv", p + "_bn2")
            channels = out_channels
            x = add(Layer(f"block{block}_project", "pointwise", [x],
                          [1, size, size, channels], False, 1, w, b))
            if stride == 1 and in_channels == out_channels:
                x = add(Layer(f"block{block}_add", "add", [x, block_in], [1, size, size, channels]))
            block += 1
    w, b = _pointwise_io(state, "_conv_head", "_bn1")
    x = add(Layer("head", "pointwise", [x], [1, size, size, HEAD_CHANNELS], True, 1, w, b))
    x = add(Layer("pool", "mean_pool", [x], [1, HEAD_CHANNELS]))
    fc = state["_fc.weight"].T.astype(np.float32)  # (1280, 1000)
    add(Layer("classifier", "dense", [x], [1, NUM_CLASSES], False, 1,
              np.ascontiguousarray(fc), state["_fc.bias"].astype(np.float32)))
    used = {n for n in state if not n.endswith("num_batches_tracked")}
    expected_blocks = sum(s[0] for s in STAGES)
    if block != expected_blocks or f"_blocks.{block}._depthwise_conv.weight" in used:
        raise ValueError("the weights file does not have the EfficientNet-Lite0 block layout")
    return out
