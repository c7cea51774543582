"""Writes the folded layers as an ONNX model with the DLR model's input contract.

Input `data`: float32 [1,224,224,3], NHWC, RGB 0..255, exactly what the DLR model takes; the
graph normalises ((x - 127) / 128) and transposes to ONNX's NCHW itself, so a service feeds
both models the same tensor. Output `logits`: float32 [1,1000], no softmax.

TensorFlow's SAME padding is written as explicit, possibly asymmetric `pads` (the odd pixel at
the bottom/right), computed from each layer's input size, rather than `auto_pad`, so the file
says exactly what it does. Opset 13 and IR version 8 keep it loadable by ONNX Runtime
releases several years old.
"""

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import network

OPSET = 13
IR_VERSION = 8
INPUT_NAME = "data"
OUTPUT_NAME = "logits"


def _same_pads(size, k, stride):
    out = -(-size // stride)
    total = max((out - 1) * stride + k - size, 0)
    return total // 2, total - total // 2


def model_bytes(layers):
    nodes, inits = [], []

    def const(name, array):
        inits.append(numpy_helper.from_array(np.ascontiguousarray(array, dtype=np.float32), name))
        return name

    size = network.INPUT_SIZE
    const("offset", np.array(127.0))
    const("divisor", np.array(128.0))
    const("relu6_min", np.array(0.0))
    const("relu6_max", np.array(6.0))
    outputs = {-1: INPUT_NAME}
    spatial = {-1: size}
    for i, layer in enumerate(layers):
        src = [outputs[j] for j in layer.inputs]
        out = f"{layer.name}_out"
        if layer.op == "normalize":
            nodes.append(helper.make_node("Sub", [src[0], "offset"], ["centred"]))
            nodes.append(helper.make_node("Div", ["centred", "divisor"], ["scaled"]))
            nodes.append(helper.make_node("Transpose", ["scaled"], [out], perm=[0, 3, 1, 2]))
        elif layer.op in ("conv", "depthwise", "pointwise"):
            if layer.op == "conv":
                weight = layer.weight.transpose(3, 2, 0, 1)  # HWIO -> OIHW
                group = 1
            elif layer.op == "depthwise":
                weight = layer.weight.transpose(2, 0, 1)[:, None]  # HWC -> C1HW
                group = weight.shape[0]
            else:
                weight = layer.weight.T[:, :, None, None]  # IO -> OI11
                group = 1
            k = weight.shape[2]
            top, bottom = _same_pads(spatial[layer.inputs[0]], k, layer.stride)
            conv_out = f"{layer.name}_conv" if layer.relu6 else out
            nodes.append(helper.make_node(
                "Conv", [src[0], const(f"{layer.name}_weight", weight),
                         const(f"{layer.name}_bias", layer.bias)], [conv_out],
                kernel_shape=[k, k], strides=[layer.stride] * 2,
                pads=[top, top, bottom, bottom], group=group))
            if layer.relu6:
                nodes.append(helper.make_node("Clip", [conv_out, "relu6_min", "relu6_max"], [out]))
        elif layer.op == "add":
            nodes.append(helper.make_node("Add", src, [out]))
        elif layer.op == "mean_pool":
            nodes.append(helper.make_node("GlobalAveragePool", src, [f"{layer.name}_4d"]))
            nodes.append(helper.make_node("Flatten", [f"{layer.name}_4d"], [out], axis=1))
        elif layer.op == "dense":
            out = OUTPUT_NAME
            nodes.append(helper.make_node(
                "Gemm", [src[0], const(f"{layer.name}_weight", layer.weight),
                         const(f"{layer.name}_bias", layer.bias)], [out]))
        else:
            raise ValueError(f"{layer.name}: no ONNX mapping for {layer.op}")
        outputs[i] = out
        spatial[i] = layer.shape[1]
    graph = helper.make_graph(
        nodes, "efficientnet-lite0",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, [1, size, size, 3])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT,
                                       [1, network.NUM_CLASSES])],
        initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="test-models/efficientnet")
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    return model.SerializeToString()
