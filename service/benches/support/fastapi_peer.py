"""The server a Python user writes for the same job: FastAPI + ONNX Runtime + Pillow.

The throughput benchmark runs it beside the service, on the same model and photos:

    uvicorn --app-dir service/benches/support fastapi_peer:app --port PORT [--workers N]

with `PEER_MODEL_DIR` naming a directory with `model.onnx` (one NHWC float32 input taking raw
0..255 RGB, as EfficientNet-Lite0's export does) and `synset.txt`. `POST /classify` takes the
encoded image as the body and answers the top 5, like the service's centre-crop mode: the
shorter side scaled to the model's side / 0.875 (224 -> 256, bilinear), then the centre.
"""

import ast
import io
import os

import numpy as np
import onnxruntime as ort
from fastapi import FastAPI, HTTPException, Request
from PIL import Image, UnidentifiedImageError
from starlette.concurrency import run_in_threadpool

MODEL_DIR = os.environ["PEER_MODEL_DIR"]
session = ort.InferenceSession(
    os.path.join(MODEL_DIR, "model.onnx"), providers=["CPUExecutionProvider"]
)
model_input = session.get_inputs()[0]
_, SIDE, _, _ = model_input.shape
with open(os.path.join(MODEL_DIR, "synset.txt"), encoding="utf-8") as f:
    labels = ast.literal_eval(f.read())

app = FastAPI()


def centre_crop(image: Image.Image) -> Image.Image:
    width, height = image.size
    scale = SIDE / 0.875 / min(width, height)
    resized = image.resize(
        (round(width * scale), round(height * scale)), Image.Resampling.BILINEAR
    )
    left = (resized.width - SIDE) // 2
    top = (resized.height - SIDE) // 2
    return resized.crop((left, top, left + SIDE, top + SIDE))


def predict(body: bytes) -> dict:
    try:
        image = Image.open(io.BytesIO(body)).convert("RGB")
    except (UnidentifiedImageError, OSError) as e:
        raise HTTPException(status_code=400, detail=f"not an image: {e}")
    tensor = np.asarray(centre_crop(image), dtype=np.float32)[np.newaxis]
    logits = session.run(None, {model_input.name: tensor})[0][0]
    exp = np.exp(logits - logits.max())
    probabilities = exp / exp.sum()
    top = np.argsort(probabilities)[::-1][:5]
    return {
        "label": labels[int(top[0])],
        "predictions": [
            {
                "index": int(i),
                "label": labels[int(i)],
                "probability": float(probabilities[i]),
            }
            for i in top
        ],
    }


@app.post("/classify")
async def classify(request: Request) -> dict:
    # Decoding and the model release the GIL; a thread keeps the event loop answering.
    return await run_in_threadpool(predict, await request.body())


@app.get("/readyz")
def ready() -> dict:
    return {"status": "ready"}
