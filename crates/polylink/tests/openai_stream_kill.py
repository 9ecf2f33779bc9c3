"""Streams one greedy chat completion with the official `openai` package and, if asked, kills a
process (a pipeline stage) after a number of chunks, then reads the stream to its end.

Usage: python3 openai_stream_kill.py BASE_URL API_KEY MODEL MAX_TOKENS [KILL_PID KILL_AFTER_CHUNKS]
Prints one JSON object: content, finish_reason, usage, the `polylink` task id and charge, and
how many chunks had arrived when the process was killed.
"""
import json
import os
import signal
import sys

import openai

base_url, api_key, model, max_tokens = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
kill_pid = int(sys.argv[5]) if len(sys.argv) > 5 else None
kill_after = int(sys.argv[6]) if len(sys.argv) > 6 else None
client = openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=0, timeout=300)

question = [{"role": "user", "content": "Write a short story about a lighthouse keeper and a storm."}]
stream = client.chat.completions.create(
    model=model, messages=question, max_tokens=max_tokens, temperature=0, stream=True,
    stream_options={"include_usage": True},
)
pieces, finish, usage, polylink, killed_at, chunks = [], None, None, None, None, 0
for chunk in stream:
    if chunk.choices:
        chunks += 1
        pieces.append(chunk.choices[0].delta.content or "")
        finish = chunk.choices[0].finish_reason or finish
    if chunk.usage is not None:
        usage = chunk.usage.model_dump()
    extra = getattr(chunk, "model_extra", None) or {}
    if "polylink" in extra:
        polylink = extra["polylink"]
    if kill_pid is not None and killed_at is None and chunks >= kill_after:
        os.kill(kill_pid, signal.SIGKILL)
        killed_at = chunks

print(json.dumps({
    "content": "".join(pieces), "finish_reason": finish, "usage": usage, "polylink": polylink,
    "killed_at_chunk": killed_at,
}))
