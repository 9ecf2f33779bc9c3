"""Honest traffic for `polylink bench traffic`, sent with the official `openai` package.

Usage: python3 traffic.py BASE_URL API_KEY MODEL PLAN_JSON
PLAN_JSON: {"requests": N, "disconnects": D, "long": L, "long_tokens": T, "max_tokens": M,
            "seed": S, "concurrency": C}

Sends N ordinary requests (chat and raw completions; temperature 0 to 1.5, some with top_p;
lengths up to M tokens; streamed or not; some with a system prompt, some with earlier turns),
D streamed requests whose client hangs up after a few chunks, and L long streamed answers of T
tokens. Prints one JSON array, one object per request: what was asked, the task id and charge the
gateway reported, the usage the client saw, whether the client hung up, the seconds it took and,
for a stream, the seconds to its first token.
"""
import json
import random
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import openai

base_url, api_key, model, plan = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
client = openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=0, timeout=900)

QUESTIONS = [
    "What is the capital of France?", "Count to ten.", "Name three colours.",
    "Explain photosynthesis in one sentence.", "What is 12 times 7?", "Give me a haiku about rain.",
    "Why is the sky blue?", "List four fruits.", "What does a compiler do?",
    "Describe a cat to someone who has never seen one.", "What is the boiling point of water?",
    "Suggest a name for a bakery.", "How many legs does a spider have?", "What is a prime number?",
]
SYSTEMS = ["You are a terse assistant.", "You answer like a pirate.", "You are a patient teacher."]
LONG = "Write a long, detailed story about a lighthouse keeper, a storm and a lost ship."


def ordinary(rng, i):
    """The i-th ordinary request: its kind and arguments."""
    temperature = rng.choice([0, 0, 0.3, 0.7, 1.0, 1.0, 1.2, 1.5])
    args = {"model": model, "max_tokens": rng.choice([8, 16, 32, 64, 128, plan["max_tokens"]]),
            "temperature": temperature}
    args["max_tokens"] = min(args["max_tokens"], plan["max_tokens"])
    if temperature > 0 and rng.random() < 0.4:
        args["top_p"] = rng.choice([0.5, 0.8, 0.95])
    if rng.random() < 0.2:
        return "completion", dict(args, prompt="Once upon a time, " + rng.choice(QUESTIONS).lower())
    messages = []
    if rng.random() < 0.3:
        messages.append({"role": "system", "content": rng.choice(SYSTEMS)})
    if rng.random() < 0.2:
        messages += [{"role": "user", "content": rng.choice(QUESTIONS)},
                     {"role": "assistant", "content": "Here is my answer."}]
    messages.append({"role": "user", "content": rng.choice(QUESTIONS)})
    return "chat", dict(args, messages=messages, stream=rng.random() < 0.5)


def plan_requests():
    rng = random.Random(plan["seed"])
    out = [("ordinary",) + ordinary(rng, i) for i in range(plan["requests"])]
    for _ in range(plan["disconnects"]):
        kind, args = ordinary(rng, 0)
        args = {k: v for k, v in args.items() if k != "prompt"}
        args.setdefault("messages", [{"role": "user", "content": LONG}])
        args.update(stream=True, max_tokens=max(64, args["max_tokens"]))
        out.append(("disconnect", "chat", dict(args, hang_up_after=rng.randint(2, 6))))
    for _ in range(plan["long"]):
        out.append(("long", "chat", {"model": model, "messages": [{"role": "user", "content": LONG}],
                                     "max_tokens": plan["long_tokens"], "temperature": 0.7, "stream": True}))
    rng.shuffle(out)
    return out


def usage_of(u):
    return None if u is None else {"prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens}


def send(item):
    label, kind, args = item
    record = {"label": label, "kind": kind, "max_tokens": args["max_tokens"],
              "temperature": args.get("temperature"), "top_p": args.get("top_p"),
              "stream": bool(args.get("stream")), "hung_up": False, "error": None}
    hang_up_after = args.pop("hang_up_after", None)
    started = time.monotonic()
    try:
        if kind == "completion":
            raw = client.completions.with_raw_response.create(**args)
            answer = raw.parse()
            record.update(task_id=raw.headers.get("x-polylink-task-id"), charge=raw.headers.get("x-polylink-charge"),
                          usage=usage_of(answer.usage), finish=answer.choices[0].finish_reason,
                          chars=len(answer.choices[0].text))
        elif not args.get("stream"):
            raw = client.chat.completions.with_raw_response.create(**args)
            answer = raw.parse()
            record.update(task_id=raw.headers.get("x-polylink-task-id"), charge=raw.headers.get("x-polylink-charge"),
                          usage=usage_of(answer.usage), finish=answer.choices[0].finish_reason,
                          chars=len(answer.choices[0].message.content or ""))
        else:
            args["stream_options"] = {"include_usage": True}
            raw = client.chat.completions.with_raw_response.create(**args)
            record["task_id"] = raw.headers.get("x-polylink-task-id")
            stream = raw.parse()
            chunks, chars, finish, usage, charge = 0, 0, None, None, None
            for chunk in stream:
                if "first_token_s" not in record and chunk.choices and chunk.choices[0].delta.content:
                    record["first_token_s"] = round(time.monotonic() - started, 3)
                if chunk.choices:
                    chunks += 1
                    chars += len(chunk.choices[0].delta.content or "")
                    finish = chunk.choices[0].finish_reason or finish
                if chunk.usage is not None:
                    usage = usage_of(chunk.usage)
                extra = getattr(chunk, "model_extra", None) or {}
                if "polylink" in extra:
                    charge = extra["polylink"].get("charge")
                if hang_up_after is not None and chunks >= hang_up_after:
                    stream.close()
                    record["hung_up"] = True
                    break
            record.update(charge=charge, usage=usage, finish=finish, chars=chars, chunks=chunks)
    except Exception as e:  # every failure is reported, none hidden
        record["error"] = f"{type(e).__name__}: {e}"
    record["seconds"] = round(time.monotonic() - started, 3)
    record["ended_at"] = time.time()
    return record


with ThreadPoolExecutor(max_workers=plan["concurrency"]) as pool:
    results = list(pool.map(send, plan_requests()))
print(json.dumps(results))
