"""Calls POST /classify with raw bytes through a client generated from the committed OpenAPI
document (openapi-python-client), and prints what it got as one JSON line.

usage: generated_client.py CLIENT_PARENT_DIR BASE_URL IMAGE_FILE
"""

import json
import sys

sys.path.insert(0, sys.argv[1])

from classify_client import Client  # noqa: E402
from classify_client.api.classify import classify_image  # noqa: E402
from classify_client.models import ClassifyResponse  # noqa: E402
from classify_client.types import File  # noqa: E402

base, image = sys.argv[2], sys.argv[3]
with open(image, "rb") as payload, Client(base_url=base) as client:
    answer = classify_image.sync(
        client=client,
        body=File(payload=payload, file_name="red.png", mime_type="application/octet-stream"),
        top_k=2,
        x_request_id="generated-client-1",
    )
assert isinstance(answer, ClassifyResponse), answer
print(json.dumps({
    "label": answer.label,
    "predictions": len(answer.predictions),
    "request_id": answer.request_id,
}))
