"""The service's Open Inference Protocol v2 routes through the real clients: tritonclient's
HTTP client and kserve's InferenceRESTClient (both pinned in generated/oip-venv/).

Usage: oip_clients.py HOST:PORT MODEL VERSION. Prints one JSON object with what each client
saw; the Rust test (service/tests/service/v2.rs) checks it.
"""

import asyncio
import json
import sys

import tritonclient.http as triton
from tritonclient.utils import InferenceServerException
from kserve import InferenceRESTClient, RESTConfig


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


def main():
    address, model, version = sys.argv[1:4]
    seen = {
        "triton": with_triton(address, model, version),
        "kserve": asyncio.run(with_kserve(address, model)),
    }
    print(json.dumps(seen))


if __name__ == "__main__":
    main()
