"""Writes folded layers as a TVM graph-executor model directory that libdlr 1.6 loads.

Files, with the Greengrass ModelStore's names: `compiled_model.json` (graph),
`compiled.params` (TVM's binary NDArray list), `compiled.so` (the kernels of `kernels.c`, one
exported packed function per layer kind), `compiled.meta`, `synset.txt`.

The graph executor gives each output entry the storage named by `storage_id` and sizes each
storage to its largest user, so activations share buffers once their last reader has run:
peak memory is a few activations, not the sum of all 80-odd.
"""

import json
import platform
import struct

import numpy as np

import network

INPUT_NAME = "data"
LIST_MAGIC = 0xF7E58D4F05049CB7
NDARRAY_MAGIC = 0xDD5E40F096B4A13F

KERNELS = {
    "normalize": "effnet_normalize",
    "conv": "effnet_conv2d_relu6",
    "depthwise": "effnet_depthwise_relu6",
    "add": "effnet_add",
    "mean_pool": "effnet_mean_pool",
    "dense": "effnet_dense",
}


def _kernel(layer):
    if layer.op == "pointwise":
        return "effnet_pointwise_relu6" if layer.relu6 else "effnet_pointwise"
    if layer.op in ("conv", "depthwise") and not layer.relu6:
        raise ValueError(f"{layer.name}: only ReLU6 {layer.op} kernels exist")
    return KERNELS[layer.op]


def graph_and_params(layers):
    """(graph JSON dict, ordered {name: float32 array})."""
    nodes, shapes, params = [], [], {}
    nodes.append({"op": "null", "name": INPUT_NAME, "inputs": []})
    shapes.append([1, network.INPUT_SIZE, network.INPUT_SIZE, 3])
    node_of_layer = {-1: 0}
    for i, layer in enumerate(layers):
        inputs = [node_of_layer[j] for j in layer.inputs]
        for suffix, value in (("weight", layer.weight), ("bias", layer.bias)):
            if value is None:
                continue
            name = f"{layer.name}_{suffix}"
            params[name] = np.ascontiguousarray(value, dtype=np.float32)
            nodes.append({"op": "null", "name": name, "inputs": []})
            shapes.append(list(value.shape))
            inputs.append(len(nodes) - 1)
        func = _kernel(layer)
        nodes.append({
            "op": "tvm_op",
            "name": layer.name,
            "attrs": {"func_name": func, "num_inputs": str(len(inputs)),
                      "num_outputs": "1", "flatten_data": "0"},
            "inputs": [[n, 0, 0] for n in inputs],
        })
        shapes.append(list(layer.shape))
        node_of_layer[i] = len(nodes) - 1
    graph = {
        "nodes": nodes,
        "arg_nodes": [i for i, n in enumerate(nodes) if n["op"] == "null"],
        "heads": [[len(nodes) - 1, 0, 0]],
        "node_row_ptr": list(range(len(nodes) + 1)),
        "attrs": {
            "dltype": ["list_str", ["float32"] * len(nodes)],
            "shape": ["list_shape", shapes],
            "storage_id": ["list_int", _storage_ids(nodes)],
        },
    }
    return graph, params


def _storage_ids(nodes):
    """Inputs and parameters get their own storage; an operator output reuses the storage of
    an output whose last reader ran before it (never one of its own inputs)."""
    last_use = {}
    for i, node in enumerate(nodes):
        for src, _, _ in node["inputs"]:
            last_use[src] = i
    ids, free, next_id = [], [], 0
    for i, node in enumerate(nodes):
        if node["op"] == "null" or not free:
            ids.append(next_id)
            next_id += 1
        else:
            ids.append(free.pop())
        # Storage of operator outputs read for the last time here becomes free after node i.
        for src, _, _ in node["inputs"]:
            if nodes[src]["op"] != "null" and last_use[src] == i:
                free.append(ids[src])
    return ids


def params_bytes(params):
    out = bytearray()
    out += struct.pack("<QQQ", LIST_MAGIC, 0, len(params))
    for name in params:
        encoded = name.encode()
        out += struct.pack("<Q", len(encoded)) + encoded
    out += struct.pack("<Q", len(params))
    for value in params.values():
        data = value.astype("<f4").tobytes()
        out += struct.pack("<QQiii", NDARRAY_MAGIC, 0, 1, 0, value.ndim)
        out += struct.pack("<BBH", 2, 32, 1)  # float32, one lane
        out += struct.pack(f"<{value.ndim}q", *value.shape)
        out += struct.pack("<q", len(data)) + data
    return bytes(out)


def meta_json():
    meta = {
        "Requirements": {"TargetPlatformOs": "LINUX",
                         "TargetPlatformArch": platform.machine().upper()},
        "Compilation": {"CreatedTime": 0, "Generator": "test-models/efficientnet"},
        "Model": {
            "Name": "efficientnet-lite0",
            "Inputs": [{"name": INPUT_NAME, "dtype": "float32",
                        "shape": [1, network.INPUT_SIZE, network.INPUT_SIZE, 3]}],
            "Outputs": [{"name": "logits", "dtype": "float32",
                         "shape": [1, network.NUM_CLASSES]}],
        },
    }
    return json.dumps(meta, indent=2)


def synset_text(labels):
    """The ModelStore's `synset.txt`: a Python dict literal, one label per line (repr quotes
    labels with an apostrophe in double quotes, as the ModelStore file does)."""
    return "{" + ",\n ".join(f"{i}: {label!r}" for i, label in enumerate(labels)) + "}"
