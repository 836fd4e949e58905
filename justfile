# Skat task runner. `just` with no arguments lists the recipes.

set shell := ["bash", "-euo", "pipefail", "-c"]

# List the recipes.
default:
    @just --list

# Install what the other recipes need (idempotent): the pinned Rust toolchain with rustfmt and
# clippy, the wasm32 target the protocol crate (and later the web app) builds for, and
# redis-server (tests start their own instances; `just cluster` uses it too).
setup:
    # RUSTUP_AUTO_INSTALL=0 machines do not fetch the toolchain pinned in rust-toolchain.toml by
    # themselves; with no argument rustup installs exactly that toolchain and its components.
    rustup toolchain install
    rustup target add wasm32-unknown-unknown
    if ! command -v redis-server >/dev/null; then \
        sudo=$([ "$(id -u)" -eq 0 ] || echo sudo); \
        $sudo apt-get update -qq && $sudo apt-get install -y -qq redis-server; \
    fi
    @echo "setup: $(rustc --version), $(redis-server --version | cut -d' ' -f1-3)"

# Run a node on http://127.0.0.1:3000 with the embedded broker; extra flags go to skat-server (see --help).
dev *ARGS: setup
    cargo run -p skat-server -- {{ARGS}}

# Three nodes on http://127.0.0.1:3001-3003 sharing a local Redis (port 6390, data in
# target/cluster) for trying multi-node chat by hand. Ctrl-C stops everything.
cluster redis_port="6390": setup
    #!/usr/bin/env bash
    set -euo pipefail
    cargo build -p skat-server
    dir=target/cluster
    mkdir -p "$dir"
    redis-server --port {{redis_port}} --bind 127.0.0.1 --dir "$dir" --save "" --appendonly yes \
        --daemonize no --logfile redis.log &
    pids=($!)
    trap 'kill "${pids[@]}" 2>/dev/null; wait' EXIT
    trap 'exit 0' INT TERM
    until redis-cli -p {{redis_port}} ping >/dev/null 2>&1; do sleep 0.1; done
    for i in 1 2 3; do
        SKAT_BIND=127.0.0.1:300$i SKAT_NODE_ID=node-$i \
            SKAT_REDIS_URL=redis://127.0.0.1:{{redis_port}}/ ./target/debug/skat-server &
        pids+=($!)
    done
    echo "cluster: nodes on ws://127.0.0.1:3001/ws, :3002, :3003 sharing redis on port {{redis_port}}"
    wait

# Everything CI checks: formatting, lints, docs and all tests. Extra args go to `cargo test`.
test *ARGS: setup fmt-check lint
    cargo check -p skat-protocol --target wasm32-unknown-unknown
    cargo test --workspace --all-targets {{ARGS}}
    cargo test --workspace --doc

# Clippy with warnings as errors, and the docs with warnings as errors.
lint:
    cargo clippy --workspace --all-targets -- -D warnings
    RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --quiet

# Format all code.
fmt:
    cargo fmt --all

# Fail if any code is not formatted.
fmt-check:
    cargo fmt --all -- --check
