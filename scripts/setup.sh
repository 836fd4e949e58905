#!/usr/bin/env bash
# Installs what the other recipes need; `just setup` runs it. Idempotent, and quiet when
# everything is already there.
#
#   scripts/setup.sh all WASM_BINDGEN_VERSION        the toolchain, the packages, a summary
#   scripts/setup.sh toolchain WASM_BINDGEN_VERSION  rustup's toolchain, wasm32, wasm-bindgen-cli
#   scripts/setup.sh packages                        the Debian packages alone
#
# The toolchain: the one pinned in rust-toolchain.toml with rustfmt and clippy, the wasm32
# target, and wasm-bindgen-cli at the version the web app is locked to (the justfile reads it
# from Cargo.lock). The packages, installed first: build-essential and pkg-config (jemalloc and
# wasm-bindgen-cli build C code), redis-server (tests start their own instances), Chromium with
# ChromeDriver (browser tests), brotli (`just web`), openssl (the TLS tests make a throwaway
# CA), nginx (the reverse-proxy test), shellcheck (`just lint`) and python3 (recipes read
# `cargo metadata` with it). A package counts as present when dpkg says it is installed; the
# missing ones are installed with apt-get, directly as root, through sudo otherwise. A user who
# is not root and has no sudo gets the list to install and a failure. Without dpkg (not Debian
# or Ubuntu) the step only says what it would have wanted.
#
# Environment: the step runs `apt-get`, `sudo`, `dpkg-query` and `id` from PATH, which is how
# scripts/test-setup.sh checks it without installing anything.
set -euo pipefail

PACKAGES=(build-essential pkg-config redis-server chromium chromium-driver brotli openssl nginx
    shellcheck python3)

die() {
    echo "setup: $*" >&2
    exit 1
}

toolchain() {
    local wasm_bindgen_version=$1
    # RUSTUP_AUTO_INSTALL=0 machines do not fetch the toolchain pinned in rust-toolchain.toml
    # by themselves; with no argument rustup installs exactly that toolchain and its components.
    # Its progress is shown only when there is a toolchain to download.
    local quiet=(--quiet)
    if ! rustc --version >/dev/null 2>&1; then
        quiet=()
    fi
    rustup "${quiet[@]}" toolchain install
    rustup --quiet target add wasm32-unknown-unknown
    if [ "$(wasm-bindgen --version 2>/dev/null)" != "wasm-bindgen $wasm_bindgen_version" ]; then
        echo "setup: installing wasm-bindgen-cli $wasm_bindgen_version (a few minutes)" >&2
        cargo install --force wasm-bindgen-cli --version "$wasm_bindgen_version"
    fi
}

# Prints the PACKAGES that dpkg does not list as installed, one per line.
missing_packages() {
    local -A installed=()
    local status package
    # dpkg-query fails when some package is unknown to it; what it printed still counts.
    while read -r status package; do
        if [ "$status" = installed ]; then
            installed[$package]=1
        fi
    done < <(dpkg-query -W -f '${db:Status-Status} ${Package}\n' "${PACKAGES[@]}" 2>/dev/null \
        || true)
    for package in "${PACKAGES[@]}"; do
        if [ -z "${installed[$package]:-}" ]; then
            echo "$package"
        fi
    done
}

packages() {
    if ! command -v dpkg-query >/dev/null || ! command -v apt-get >/dev/null; then
        echo "setup: no dpkg/apt-get here: install ${PACKAGES[*]} (or your system's" \
            "equivalents) yourself" >&2
        return
    fi
    local missing
    mapfile -t missing < <(missing_packages)
    if [ ${#missing[@]} -eq 0 ]; then
        return
    fi
    # As a command prefix: nothing for root, sudo for anyone else. `env` sets apt-get's
    # environment in both cases: sudo resets the caller's, and a policy that allows the user
    # only some commands refuses VAR=value arguments.
    local as_root=()
    if [ "$(id -u)" -ne 0 ]; then
        if ! command -v sudo >/dev/null; then
            die "missing packages: ${missing[*]}; you are not root and there is no sudo:" \
                "as root, run: apt-get install ${missing[*]}"
        fi
        as_root=(sudo)
    fi
    echo "setup: installing ${missing[*]}" >&2
    "${as_root[@]}" apt-get update -qq
    "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
}

summary() {
    local redis chromedriver
    redis=$(redis-server --version 2>/dev/null | cut -d' ' -f1-3) || redis="no redis-server"
    chromedriver=$(chromedriver --version 2>/dev/null | cut -d' ' -f1-2) \
        || chromedriver="no chromedriver"
    echo "setup: $(rustc --version), $(wasm-bindgen --version), $redis, $chromedriver"
}

usage() {
    die "usage: $0 all WASM_BINDGEN_VERSION | toolchain WASM_BINDGEN_VERSION | packages"
}

cd "$(dirname "$0")/.."
case "${1:-}" in
    all)
        [ $# -eq 2 ] || usage
        # Packages first: building wasm-bindgen-cli (and jemalloc, later) needs a C compiler.
        packages
        toolchain "$2"
        summary
        ;;
    toolchain)
        [ $# -eq 2 ] || usage
        toolchain "$2"
        ;;
    packages)
        [ $# -eq 1 ] || usage
        packages
        ;;
    *) usage ;;
esac
