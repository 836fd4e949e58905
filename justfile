# Skat task runner. `just` with no arguments lists the recipes.

set shell := ["bash", "-euo", "pipefail", "-c"]

# List the recipes.
default:
    @just --list

# The wasm-bindgen version the web app is locked to; the CLI must match it exactly.
wasm_bindgen_version := `sed -n '/^name = "wasm-bindgen"$/{n;s/version = "\(.*\)"/\1/p;}' Cargo.lock`

# The pinned Rust toolchain with rustfmt and clippy, the wasm32 target, wasm-bindgen-cli at the
# locked version, and the Debian packages the tests and recipes use (apt-get as root, through
# sudo otherwise; see scripts/setup.sh and README). Idempotent, and quiet when all is there.
# Install what the other recipes need.
setup:
    @scripts/setup.sh all {{wasm_bindgen_version}}

# Checks the exact commands it runs as root and as a user, and that it runs nothing when every
# package is installed, with fake apt-get, sudo, dpkg-query and id (no network, no install).
# Test the install path of `setup`.
test-setup:
    scripts/test-setup.sh

# Build the web app's release bundle into target/web and print its compressed size. What
# index.html loads gets a content hash in its name (served as immutable), and every file a
# brotli and a gzip copy beside it (served by Accept-Encoding).
web:
    #!/usr/bin/env bash
    set -euo pipefail
    if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
        echo "error: the wasm32-unknown-unknown target is missing: run 'just setup'" >&2; exit 1
    fi
    if [ "$(wasm-bindgen --version 2>/dev/null)" != "wasm-bindgen {{wasm_bindgen_version}}" ]; then
        echo "error: wasm-bindgen-cli {{wasm_bindgen_version}} is missing: run 'just setup'" >&2; exit 1
    fi
    if ! command -v brotli >/dev/null; then
        echo "error: brotli is missing: run 'just setup'" >&2; exit 1
    fi
    cargo build -p web --profile wasm-release --target wasm32-unknown-unknown
    # Wherever cargo builds (CARGO_TARGET_DIR, a config file...): ask it.
    target_dir=$(cargo metadata --format-version 1 --no-deps \
        | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
    rm -rf target/web && mkdir -p target/web
    wasm-bindgen --target web --no-typescript --remove-name-section --out-dir target/web \
        "$target_dir/wasm32-unknown-unknown/wasm-release/web.wasm"
    cp apps/web/static/* target/web/
    cd target/web
    # <name>.<ext> -> <name>-<10 hex digits of its SHA-256>.<ext>, and the references to it.
    hashed() { echo "${1%%.*}-$(sha256sum "$1" | cut -c1-10).${1#*.}"; }
    wasm=$(hashed web_bg.wasm); mv web_bg.wasm "$wasm"
    sed -i "s/web_bg\.wasm/$wasm/g" web.js index.html
    js=$(hashed web.js); mv web.js "$js"
    css=$(hashed style.css); mv style.css "$css"
    sed -i -e "s/\.\/web\.js/.\/$js/g" -e "s/\.\/style\.css/.\/$css/g" index.html
    for f in *; do
        gzip -9 -k -n "$f"
        brotli -q 11 -k "$f"
    done
    total=0
    for f in "$wasm" "$js" "$css" index.html; do
        size=$(wc -c < "$f.br"); total=$((total + size))
        printf '  %-24s %7d bytes brotli, %7d gzip\n' "$f" "$size" "$(wc -c < "$f.gz")"
    done
    echo "web: bundle in target/web, $((total / 1024)) KiB brotli in total (budget 300 KiB)"

# Run a node on http://127.0.0.1:3000 with the embedded broker, its rooms kept in
# target/dev-data (history survives a restart; delete the dir to start afresh), serving the web
# app; extra flags go to skat-server (see --help).
dev *ARGS: setup web
    cargo run -p skat-server -- --static-dir target/web --data-dir target/dev-data {{ARGS}}

# Three nodes on http://127.0.0.1:3001-3003 sharing a local Redis (port 6390, data in
# target/cluster) for trying multi-node chat by hand. Ctrl-C stops everything.
cluster redis_port="6390": setup
    #!/usr/bin/env bash
    set -euo pipefail
    just web
    cargo build -p skat-server
    target_dir=$(cargo metadata --format-version 1 --no-deps \
        | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
    dir=target/cluster
    mkdir -p "$dir"
    redis-server --port {{redis_port}} --bind 127.0.0.1 --dir "$dir" --save "" --appendonly yes \
        --daemonize no --logfile redis.log &
    pids=($!)
    trap 'kill "${pids[@]}" 2>/dev/null; wait' EXIT
    trap 'exit 0' INT TERM
    until redis-cli -p {{redis_port}} ping >/dev/null 2>&1; do sleep 0.1; done
    for i in 1 2 3; do
        SKAT_BIND=127.0.0.1:300$i SKAT_NODE_ID=node-$i SKAT_STATIC_DIR=target/web \
            SKAT_REDIS_URL=redis://127.0.0.1:{{redis_port}}/ "$target_dir/debug/skat-server" &
        pids+=($!)
    done
    echo "cluster: nodes on http://127.0.0.1:3001, :3002, :3003 sharing redis on port {{redis_port}}"
    wait

# Like `cluster`, on a local Redis Cluster: 3 masters and 3 replicas on ports 7001-7006 (data
# in target/redis-cluster) and three nodes on http://127.0.0.1:3001-3003 with --redis-cluster
# and --redis-wait-replicas 1. Kill a master (see `redis-cli -p 7001 cluster nodes`) to watch a
# failover. Ctrl-C stops everything.
cluster-sharded: setup
    #!/usr/bin/env bash
    set -euo pipefail
    just web
    cargo build -p skat-server
    target_dir=$(cargo metadata --format-version 1 --no-deps \
        | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
    dir=target/redis-cluster
    rm -rf "$dir" && mkdir -p "$dir"
    pids=()
    trap 'kill "${pids[@]}" 2>/dev/null; wait' EXIT
    trap 'exit 0' INT TERM
    seeds=()
    for port in 7001 7002 7003 7004 7005 7006; do
        mkdir -p "$dir/$port"
        redis-server --port $port --bind 127.0.0.1 --dir "$dir/$port" --cluster-enabled yes \
            --cluster-config-file nodes.conf --cluster-node-timeout 2000 --appendonly yes \
            --repl-diskless-sync-delay 0 --daemonize no --logfile redis.log &
        pids+=($!)
        seeds+=("127.0.0.1:$port")
    done
    for port in 7001 7002 7003 7004 7005 7006; do
        until redis-cli -p $port ping >/dev/null 2>&1; do sleep 0.1; done
    done
    redis-cli --cluster create "${seeds[@]}" --cluster-replicas 1 --cluster-yes >/dev/null
    until redis-cli -p 7001 cluster info | grep -q cluster_state:ok; do sleep 0.1; done
    urls=$(printf 'redis://%s/,' "${seeds[@]}")
    for i in 1 2 3; do
        SKAT_BIND=127.0.0.1:300$i SKAT_NODE_ID=node-$i SKAT_STATIC_DIR=target/web \
            SKAT_REDIS_URL="${urls%,}" SKAT_REDIS_CLUSTER=true SKAT_REDIS_WAIT_REPLICAS=1 \
            "$target_dir/debug/skat-server" &
        pids+=($!)
    done
    echo "cluster-sharded: nodes on http://127.0.0.1:3001, :3002, :3003 over a Redis Cluster on 7001-7006"
    wait

# Everything CI checks: formatting, lints, docs, the web bundle and all tests, browser tests
# included. Extra args go to `cargo test`.
test *ARGS: test-setup setup fmt-check lint web
    cargo test --workspace --all-targets {{ARGS}}
    cargo test --workspace --doc

# The fault scenarios too long for `just test` (`#[ignore]`d there): today a node with 20,000
# rooms on a Redis Cluster resubscribing and catching up after its shard connections drop (about
# half a minute, mostly making the rooms). Extra args go to `cargo test`.
# Run the long Redis fault scenarios.
chaos *ARGS: setup
    cargo test -p skat-broker --all-features --test cluster {{ARGS}} -- --ignored

# Every shell script is checked (`scripts/*.sh`, `.ci/run`), not the recipe bodies here; the
# module layering is ARCHITECTURE.md's invariant (no import cycle between sibling modules).
# shellcheck, the module layering, clippy and the docs, with warnings as errors.
lint:
    shellcheck scripts/*.sh .ci/run
    python3 scripts/module-cycles.py
    cargo clippy --workspace --all-targets -- -D warnings
    cargo clippy -p web --target wasm32-unknown-unknown -- -D warnings
    RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --document-private-items --quiet
    RUSTDOCFLAGS="-D warnings" cargo doc -p skat-broker --all-features --no-deps --document-private-items --quiet

# The benchmark suite (apps/bench), about 6-10 minutes: floor, one embedded node and 2 nodes on
# Redis; chat shape at 80k and 160k deliveries/s, busy room at write delays 0/5/20 ms, a
# 15,000-client storm, idle memory. floor (the reference fan-out) is built from $FLOOR_DIR
# (default ../shared/floor). Extra args go to `skat-bench suite`, e.g. `just bench --quick`,
# `just bench --only chat,busy --targets floor,embedded`, or
# `just bench --skat-bin /tmp/skat-baseline/skat-server --out target/bench/baseline.json`.
# Build release binaries and run the benchmark suite: a table, and target/bench/results.json.
bench *ARGS:
    #!/usr/bin/env bash
    set -euo pipefail
    cargo build --release -p skat-server -p skat-bench
    target_dir=$(cargo metadata --format-version 1 --no-deps \
        | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
    floor_dir="${FLOOR_DIR:-../shared/floor}"
    if [ -f "$floor_dir/Cargo.toml" ]; then
        cargo build --release --manifest-path "$floor_dir/Cargo.toml" --target-dir target/floor
    else
        echo "bench: no floor sources in $floor_dir (set FLOOR_DIR); the floor target will fail" >&2
    fi
    export SKAT_BENCH_SKAT_BIN="${SKAT_BENCH_SKAT_BIN:-$target_dir/release/skat-server}"
    "$target_dir/release/skat-bench" suite {{ARGS}}

# The capacity model (CAPACITY.md), about 7 minutes: measures the per-unit costs on this box
# (`skat-bench units`, into target/bench/units.json), prints the model's tables for 100k, 1M and
# 10M users (`skat-bench capacity`; extra args go to it, e.g. `just capacity --room-size 50`),
# then Redis's load with 10 to 200 simulated nodes (`skat-bench simnodes`).
capacity *ARGS:
    #!/usr/bin/env bash
    set -euo pipefail
    cargo build --release -p skat-server -p skat-bench
    mkdir -p target/bench
    target/release/skat-bench units --out target/bench/units.json > /dev/null
    target/release/skat-bench capacity --units target/bench/units.json {{ARGS}}
    target/release/skat-bench simnodes --out target/bench/simnodes.json

# Autobahn|Testsuite's fuzzing client (installed from PyPI under Python 2.7 into
# target/autobahn/python) against an echo server over Skat's own WebSocket layer; prints the
# count per behavior, fails on any case not OK, NON-STRICT or INFORMATIONAL (or not closed
# OK), reports in target/autobahn. A few minutes; not part of `just test` (needs Python 2.7).
# Check the WebSocket layer's conformance to RFC 6455.
autobahn:
    scripts/autobahn.sh

# Format all code.
fmt:
    cargo fmt --all

# Fail if any code is not formatted.
fmt-check:
    cargo fmt --all -- --check
