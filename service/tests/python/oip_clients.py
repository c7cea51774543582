"""The service's Open Inference Protocol v2 routes through the real clients: tritonclient's
HTTP client and kserve's InferenceRESTClient (both pinned in generated/oip-venv/).

Usage:
  oip_clients.py metadata HOST:PORT MODEL VERSION
  oip_clients.py infer HOST:PORT MODEL INPUT OUTPUT PHOTO...
  oip_clients.py tensor HOST:PORT MODEL INPUT OUTPUT DATATYPE LAYOUT SHAPE R,G,B
  oip_clients.py refused HOST:PORT MODEL INPUT PHOTO
Prints one JSON object with what each client saw; the Rust tests (service/tests/service/v2.rs)
check it. `infer` sends the photos as encoded images (BYTES, shape [N]); `tensor` sends the
model's own tensor (SHAPE as JSON, the model's) filled with one colour, a batch of two;
`refused` sends one photo expecting a refusal and prints what each client reports of it.
"""

import asyncio
import json
import sys

import numpy as np
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException
from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig


def with_triton(address, model, version):
    client = triton.InferenceServerClient(url=address)
    seen = {
        "live": client.is_server_live(),
        "ready": client.is_server_ready(),
        "server": client.get_server_metadata(),
        "model_ready": client.is_model_ready(model),
        "model_version_ready": client.is_model_ready(model, version),
        "metadata": client.get_model_metadata(model),
        "version_metadata": client.get_model_metadata(model, version),
        "config": client.get_model_config(model),
        "index": client.get_model_repository_index(),
    }
    try:
        client.get_model_metadata("no-such-model")
        seen["unknown"] = None
    except InferenceServerException as e:
        seen["unknown"] = {"status": e.status(), "message": e.message()}
    seen["unknown_ready"] = client.is_model_ready("no-such-model")
    client.close()
    return seen


async def with_kserve(address, model):
    client = InferenceRESTClient(RESTConfig(protocol="v2"))
    base = f"http://{address}"
    seen = {
        "live": await client.is_server_live(base),
        "ready": await client.is_server_ready(base),
        "model_ready": await client.is_model_ready(base, model),
        "unknown_ready": await client.is_model_ready(base, "no-such-model"),
    }
    await client.close()
    return seen


def top5(rows):
    """Each row's five largest outputs as [index, value], largest first."""
    return [
        [[int(i), float(row[i])] for i in np.argsort(-row, kind="stable")[:5]]
        for row in np.asarray(rows, dtype=np.float64)
    ]


def triton_failure(call):
    try:
        call()
        return None
    except InferenceServerException as e:
        return {"status": e.status(), "message": e.message()}


def triton_infer(address, model, input_name, output_name, blobs):
    client = triton.InferenceServerClient(url=address)

    def images(batch):
        tensor = triton.InferInput(input_name, [len(batch)], "BYTES")
        tensor.set_data_from_numpy(np.array(batch, dtype=np.object_))
        return tensor

    seen = {}
    # No outputs named: tritonclient asks for every output in binary.
    result = client.infer(model, [images(blobs[:1])])
    seen["binary"] = top5(result.as_numpy(output_name))
    seen["binary_header"] = result.get_response()
    result = client.infer(
        model,
        [images(blobs[:1])],
        outputs=[triton.InferRequestedOutput(output_name, binary_data=False)],
    )
    seen["json"] = top5(result.as_numpy(output_name))
    seen["json_header"] = result.get_response()["outputs"][0]["shape"]
    result = client.infer(model, [images(blobs)], request_id="batch-1")
    seen["batch"] = top5(result.as_numpy(output_name))
    seen["batch_id"] = result.get_response()["id"]
    result = client.infer(
        model,
        [images(blobs)],
        outputs=[triton.InferRequestedOutput(output_name, class_count=5)],
    )
    seen["classification"] = [
        [element.decode() for element in row] for row in result.as_numpy(output_name)
    ]

    seen["not_an_image"] = triton_failure(
        lambda: client.infer(model, [images([blobs[0], b"not an image"])])
    )
    seen["too_many"] = triton_failure(
        lambda: client.infer(model, [images(blobs + blobs[:1])])
    )
    seen["unknown_model"] = triton_failure(
        lambda: client.infer("no-such-model", [images(blobs[:1])])
    )
    floats = triton.InferInput(input_name, [1, 3], "FP16")
    floats.set_data_from_numpy(np.zeros((1, 3), dtype=np.float16))
    seen["wrong_datatype"] = triton_failure(lambda: client.infer(model, [floats]))
    seen["unknown_output"] = triton_failure(
        lambda: client.infer(
            model,
            [images(blobs[:1])],
            outputs=[triton.InferRequestedOutput("no-such-output")],
        )
    )
    client.close()
    return seen


async def kserve_infer(address, model, input_name, output_name, blobs):
    client = InferenceRESTClient(RESTConfig(protocol="v2"))
    tensor = InferInput(name=input_name, shape=[len(blobs)], datatype="BYTES")
    tensor.set_data_from_numpy(np.array(blobs, dtype=np.object_), binary_data=True)
    request = InferRequest(model_name=model, infer_inputs=[tensor], request_id="kserve-1")
    response = await client.infer(f"http://{address}", request, model_name=model)
    output = response.outputs[0]
    seen = {
        "id": response.id,
        "model_name": response.model_name,
        "output": output.name,
        "shape": list(output.shape),
        "top5": top5(output.as_numpy()),
    }
    await client.close()
    return seen


def colour_tensor(datatype, layout, shape, rgb, count):
    """`count` images of one colour in the model's own layout and element type."""
    per_image = shape[1:]
    if layout == "NCHW":
        image = np.stack([np.full(per_image[1:], c) for c in rgb])
    else:
        image = np.full(per_image, rgb)
    dtype = np.float32 if datatype == "FP32" else np.uint8
    return np.stack([image] * count).astype(dtype)


def tensor_infer(address, model, input_name, output_name, datatype, layout, shape, rgb):
    client = triton.InferenceServerClient(url=address)
    batch = colour_tensor(datatype, layout, shape, rgb, 2)

    def tensor(array, binary):
        tensor = triton.InferInput(input_name, list(array.shape), datatype)
        tensor.set_data_from_numpy(array, binary_data=binary)
        return tensor

    seen = {}
    result = client.infer(model, [tensor(batch, True)])
    seen["binary"] = result.as_numpy(output_name).tolist()
    result = client.infer(
        model,
        [tensor(batch[:1], False)],
        outputs=[triton.InferRequestedOutput(output_name, binary_data=False)],
    )
    seen["json"] = result.as_numpy(output_name).tolist()
    wrong = np.zeros((1,) + tuple(d + 1 for d in batch.shape[1:]), dtype=batch.dtype)
    seen["wrong_shape"] = triton_failure(lambda: client.infer(model, [tensor(wrong, True)]))
    client.close()

    async def with_kserve():
        client = InferenceRESTClient(RESTConfig(protocol="v2"))
        tensor = InferInput(name=input_name, shape=list(batch.shape), datatype=datatype)
        tensor.set_data_from_numpy(batch, binary_data=False)
        request = InferRequest(model_name=model, infer_inputs=[tensor])
        response = await client.infer(f"http://{address}", request, model_name=model)
        await client.close()
        return response.outputs[0].as_numpy().tolist()

    seen["kserve_json"] = asyncio.run(with_kserve())
    return seen


def refused(address, model, input_name, blob):
    """One photo through each client, which must fail: the error each reports."""
    client = triton.InferenceServerClient(url=address)
    tensor = triton.InferInput(input_name, [1], "BYTES")
    tensor.set_data_from_numpy(np.array([blob], dtype=np.object_))
    seen = {"triton": triton_failure(lambda: client.infer(model, [tensor]))}
    client.close()

    async def with_kserve():
        client = InferenceRESTClient(RESTConfig(protocol="v2"))
        tensor = InferInput(name=input_name, shape=[1], datatype="BYTES")
        tensor.set_data_from_numpy(np.array([blob], dtype=np.object_), binary_data=True)
        request = InferRequest(model_name=model, infer_inputs=[tensor])
        try:
            await client.infer(f"http://{address}", request, model_name=model)
            return None
        except Exception as e:  # httpx.HTTPStatusError, with the server's message
            return {"status": str(e.response.status_code), "message": str(e)}
        finally:
            await client.close()

    seen["kserve"] = asyncio.run(with_kserve())
    return seen


def main():
    mode, address = sys.argv[1:3]
    if mode == "metadata":
        model, version = sys.argv[3:5]
        seen = {
            "triton": with_triton(address, model, version),
            "kserve": asyncio.run(with_kserve(address, model)),
        }
    elif mode == "refused":
        model, input_name, path = sys.argv[3:6]
        with open(path, "rb") as photo:
            seen = refused(address, model, input_name, photo.read())
    elif mode == "tensor":
        model, input_name, output_name, datatype, layout, shape, rgb = sys.argv[3:10]
        seen = tensor_infer(
            address,
            model,
            input_name,
            output_name,
            datatype,
            layout,
            json.loads(shape),
            [int(c) for c in rgb.split(",")],
        )
    else:
        model, input_name, output_name = sys.argv[3:6]
        blobs = []
        for path in sys.argv[6:]:
            with open(path, "rb") as photo:
                blobs.append(photo.read())
        seen = {
            "triton": triton_infer(address, model, input_name, output_name, blobs),
            "kserve": asyncio.run(
                kserve_infer(address, model, input_name, output_name, blobs)
            ),
        }
    print(json.dumps(seen))


if __name__ == "__main__":
    main()
