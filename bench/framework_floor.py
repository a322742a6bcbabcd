"""What the framework itself costs a request like /embed's: FastAPI under uvicorn, a multipart upload
read whole, an answer of one 256-d embedding as JSON, and nothing else. bench.http_sizes serves it
beside `facever serve` and sends it the same photos, so the time our own request handling adds can be
told from the framework's floor.

    uvicorn bench.framework_floor:app
"""

from __future__ import annotations

from fastapi import FastAPI, Request

app = FastAPI()
ANSWER = {"embeddings": [{"embedding": [0.0625] * 256, "dim": 256}]}


@app.post("/embed")
async def embed(request: Request) -> dict:
    form = await request.form()
    await form["images"].read()
    return ANSWER
