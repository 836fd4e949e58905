# Skat task runner. `just` with no arguments lists the recipes.

set shell := ["bash", "-euo", "pipefail", "-c"]

# List the recipes.
default:
    @just --list

# Install what the other recipes need (idempotent): the pinned Rust toolchain with rustfmt and
# clippy, and the wasm32 target the protocol crate (and later the web app) builds for.
setup:
    # RUSTUP_AUTO_INSTALL=0 machines do not fetch the toolchain pinned in rust-toolchain.toml by
    # themselves; with no argument rustup installs exactly that toolchain and its components.
    rustup toolchain install
    rustup target add wasm32-unknown-unknown
    @echo "setup: $(rustc --version)"

# Run a node on http://127.0.0.1:3000 with the embedded broker; extra flags go to skat-server (see --help).
dev *ARGS: setup
    cargo run -p skat-server -- {{ARGS}}

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
