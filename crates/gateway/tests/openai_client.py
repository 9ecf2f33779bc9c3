"""The official `openai` package, used unchanged against a PolyLink gateway.

Usage: python3 openai_client.py BASE_URL API_KEY MODEL. Prints one JSON object with what it saw.
"""
import json
import sys

import openai

base_url, api_key, model = sys.argv[1:4]
client = openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=0, timeout=120)

models = [m.id for m in client.models.list()]
question = [{"role": "user", "content": "What is the capital of France?"}]

raw = client.chat.completions.with_raw_response.create(model=model, messages=question, max_tokens=8, temperature=0)
chat = raw.parse()

stream = client.chat.completions.create(
    model=model, messages=question, max_tokens=8, temperature=0, stream=True,
    stream_options={"include_usage": True},
)
pieces, finish, stream_usage = [], None, None
for chunk in stream:
    if chunk.choices:
        pieces.append(chunk.choices[0].delta.content or "")
        finish = chunk.choices[0].finish_reason or finish
    if chunk.usage is not None:
        stream_usage = chunk.usage.model_dump()

try:
    client.chat.completions.create(model="no-such-model", messages=question, max_tokens=2)
    error = None
except openai.NotFoundError as e:
    error = {"status": e.status_code, "code": e.code}

print(json.dumps({
    "models": models,
    "chat": {
        "content": chat.choices[0].message.content,
        "finish_reason": chat.choices[0].finish_reason,
        "usage": chat.usage.model_dump(),
        "headers": {k: v for k, v in raw.headers.items() if k.startswith("x-polylink")},
    },
    "stream": {"content": "".join(pieces), "finish_reason": finish, "usage": stream_usage},
    "unknown_model_error": error,
}))
