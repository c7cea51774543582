"""Writes the colour test models as ONNX graphs, for the ONNX Runtime backend's tests.

The same arithmetic as the DLR colour models of `dlr-test-models` (average each channel of the
raw 0..255 pixels, normalise the mean colour with the ImageNet mean and std, score the mean colour with a dense layer
whose logits are minus the squared distance to each class colour, up to a per-image constant),
with the same float32 parameters, so `dlr_test_models::expected_logits` predicts both runtimes'
answers. `cargo xtask setup` runs this in the project's virtualenv and passes a JSON document on
stdin: {"out": dir, "mean": [3], "std": [3], "weight": [classes*3], "bias": [classes],
"synset": text, "models": [{"name", "layout": "NHWC"|"NCHW", "height", "width",
"dtype": "float32"|"uint8", "batch": 1 | "N"}]}. Each model directory gets `model.onnx` and
`synset.txt`, written to a temporary directory first and renamed into place.
"""

import json
import os
import shutil
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

# ONNX Runtime 1.22 reads IR versions up to 11 and opsets up to 23; opset 13 still takes
# ReduceMean's axes as an attribute, which keeps the graph short.
IR_VERSION = 8
OPSET = 13


def build(spec, model):
    nchw = model["layout"] == "NCHW"
    h, w = model["height"], model["width"]
    batch = model["batch"]
    shape = [batch, 3, h, w] if nchw else [batch, h, w, 3]
    elem = TensorProto.UINT8 if model["dtype"] == "uint8" else TensorProto.FLOAT
    classes = len(spec["bias"])

    init = [
        numpy_helper.from_array(np.array(spec["mean"], np.float32), "mean"),
        numpy_helper.from_array(np.array(spec["std"], np.float32), "std"),
        # Row k of the DLR dense weight is class k; MatMul wants [3, classes].
        numpy_helper.from_array(
            np.array(spec["weight"], np.float32).reshape(classes, 3).T.copy(), "weight"
        ),
        numpy_helper.from_array(np.array(spec["bias"], np.float32), "bias"),
    ]
    nodes = []
    pixels = "data"
    if elem == TensorProto.UINT8:
        nodes.append(helper.make_node("Cast", ["data"], ["pixels"], to=TensorProto.FLOAT))
        pixels = "pixels"
    # Pooling first: sums of 0..255 integers stay exact in float32 up to 2^24 (65k pixels),
    # so the mean colour is exact and only the 3-vector is normalised.
    nodes += [
        helper.make_node(
            "ReduceMean", [pixels], ["mean_pixel"], axes=[2, 3] if nchw else [1, 2], keepdims=0
        ),
        helper.make_node("Sub", ["mean_pixel", "mean"], ["centred"]),
        helper.make_node("Div", ["centred", "std"], ["mean_colour"]),
        helper.make_node("MatMul", ["mean_colour", "weight"], ["scores"]),
        helper.make_node("Add", ["scores", "bias"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes,
        model["name"],
        [helper.make_tensor_value_info("data", elem, shape)],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, classes])],
        init,
    )
    proto = helper.make_model(
        graph,
        producer_name="classify xtask colour_onnx.py",
        opset_imports=[helper.make_opsetid("", OPSET)],
        ir_version=IR_VERSION,
    )
    onnx.checker.check_model(proto, full_check=True)
    return proto


def main():
    spec = json.load(sys.stdin)
    for model in spec["models"]:
        target = os.path.join(spec["out"], model["name"])
        partial = target + ".partial"
        shutil.rmtree(partial, ignore_errors=True)
        os.makedirs(partial)
        onnx.save(build(spec, model), os.path.join(partial, "model.onnx"))
        with open(os.path.join(partial, "synset.txt"), "w") as f:
            f.write(spec["synset"])
        shutil.rmtree(target, ignore_errors=True)
        os.rename(partial, target)


if __name__ == "__main__":
    main()
