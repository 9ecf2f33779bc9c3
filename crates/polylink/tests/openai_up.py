"""The official `openai` package, used unchanged against `polylink up`.

Usage: python3 openai_up.py BASE_URL API_KEY MODEL. Lists models, sends one chat completion and one
streamed chat completion, and prints one JSON object with what it saw, including the task ids and
charges the gateway reports (headers for the plain call, the last chunk's `polylink` field for the
stream).
"""
import json
import sys

import openai

base_url, api_key, model = sys.argv[1:4]
client = openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=0, timeout=300)

models = [m.id for m in client.models.list()]
question = [{"role": "user", "content": "What is the capital of France?"}]

raw = client.chat.completions.with_raw_response.create(model=model, messages=question, max_tokens=24, temperature=0)
chat = raw.parse()

stream = client.chat.completions.create(
    model=model, messages=question, max_tokens=24, temperature=0, stream=True,
    stream_options={"include_usage": True},
)
pieces, finish, stream_usage, polylink = [], None, None, None
for chunk in stream:
    if chunk.choices:
        pieces.append(chunk.choices[0].delta.content or "")
        finish = chunk.choices[0].finish_reason or finish
    if chunk.usage is not None:
        stream_usage = chunk.usage.model_dump()
    extra = getattr(chunk, "model_extra", None) or {}
    if "polylink" in extra:
        polylink = extra["polylink"]

print(json.dumps({
    "models": models,
    "chat": {
        "content": chat.choices[0].message.content,
        "finish_reason": chat.choices[0].finish_reason,
        "usage": chat.usage.model_dump(),
        "task_id": raw.headers.get("x-polylink-task-id"),
        "charge": raw.headers.get("x-polylink-charge"),
    },
    "stream": {"content": "".join(pieces), "finish_reason": finish, "usage": stream_usage, "polylink": polylink},
}))
