#!/usr/bin/env bash
# Tests scripts/setup.sh's package step (`just test-setup`, part of `just test`) without
# installing anything or touching the network: each case runs it with a PATH of fakes that
# record what they were asked to do (`apt-get`, `sudo`, `dpkg-query`, `id`) and the few real
# tools it needs, nothing else, so the real apt-get and sudo are out of reach. The cases assert
# the exact commands run (arguments, and DEBIAN_FRONTEND in apt-get's environment) as root and
# as a user with sudo, that nothing runs when every package is there, and the failure of a user
# without sudo.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
bash_path=$(command -v bash)
all="build-essential pkg-config redis-server chromium chromium-driver brotli openssl nginx shellcheck python3"

# The fakes: `fake NAME` writes $tmp/fakes/NAME from its standard input; a case links the ones
# it has into its PATH.
mkdir "$tmp/fakes"
fake() {
    { printf '#!%s\nset -euo pipefail\n' "$bash_path" && cat; } >"$tmp/fakes/$1"
    chmod +x "$tmp/fakes/$1"
}
fake id <<'EOF'
[ "$*" = -u ] && echo "$FAKE_UID"
EOF
# Like dpkg-query -W -f '${db:Status-Status} ${Package}\n': a line per package it knows (the
# ones in FAKE_INSTALLED), an error and exit status 1 if any is unknown.
fake dpkg-query <<'EOF'
status=0
for arg in "$@"; do
    case "$arg" in -* | *'${'*) continue ;; esac
    if [[ " $FAKE_INSTALLED " == *" $arg "* ]]; then
        echo "installed $arg"
    else
        echo "dpkg-query: no packages found matching $arg" >&2
        status=1
    fi
done
exit $status
EOF
fake apt-get <<'EOF'
echo "apt-get $* [DEBIAN_FRONTEND=${DEBIAN_FRONTEND-unset}]" >>"$SETUP_LOG"
EOF
# Like sudo for a user allowed some commands only (no SETENV): refuses VAR=value, and runs the
# command in a reset environment.
fake sudo <<'EOF'
echo "sudo $*" >>"$SETUP_LOG"
if [[ "$1" == *=* ]]; then
    echo "sudo: sorry, you are not allowed to set the following environment variables: ${1%%=*}" >&2
    exit 1
fi
exec env -i PATH="$PATH" SETUP_LOG="$SETUP_LOG" "$@"
EOF
passed=0
failed=0

# scenario NAME UID INSTALLED TOOLS EXPECTED_STATUS EXPECTED_LOG [EXPECTED_OUTPUT_PART]
scenario() {
    local name=$1 uid=$2 installed=$3 tools=$4 want_status=$5 want_log=$6 want_output=${7:-}
    local dir="$tmp/$name"
    mkdir -p "$dir/bin"
    local tool
    for tool in bash env dirname; do
        ln -s "$(command -v "$tool")" "$dir/bin/$tool"
    done
    for tool in $tools; do
        ln -s "$tmp/fakes/$tool" "$dir/bin/$tool"
    done
    : >"$dir/log"
    local status=0
    env -i PATH="$dir/bin" HOME="$dir" FAKE_UID="$uid" FAKE_INSTALLED="$installed" \
        SETUP_LOG="$dir/log" "$bash_path" "$root/scripts/setup.sh" packages \
        >"$dir/output" 2>&1 || status=$?
    local log output problems=()
    log=$(<"$dir/log")
    output=$(<"$dir/output")
    [ "$status" = "$want_status" ] || problems+=("exit status $status, want $want_status")
    [ "$log" = "$want_log" ] || problems+=("commands run:
$log
want:
$want_log")
    if [ -z "$want_output" ]; then
        [ -z "$output" ] || problems+=("printed something, want nothing")
    elif [[ "$output" != *"$want_output"* ]]; then
        problems+=("output does not say: $want_output")
    fi
    if [ ${#problems[@]} -eq 0 ]; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
        printf 'FAIL %s:\n' "$name"
        printf '  %s\n' "${problems[@]}"
        printf '  output:\n%s\n' "$output"
    fi
}

tools="id dpkg-query apt-get sudo"

scenario root-installs-all 0 "" "$tools" 0 "\
apt-get update -qq [DEBIAN_FRONTEND=unset]
apt-get install -y -qq $all [DEBIAN_FRONTEND=noninteractive]" "setup: installing $all"

scenario user-installs-the-missing-through-sudo 1000 "build-essential pkg-config openssl python3" "$tools" 0 "\
sudo apt-get update -qq
apt-get update -qq [DEBIAN_FRONTEND=unset]
sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server chromium chromium-driver brotli nginx shellcheck
apt-get install -y -qq redis-server chromium chromium-driver brotli nginx shellcheck [DEBIAN_FRONTEND=noninteractive]" \
    "setup: installing redis-server chromium chromium-driver brotli nginx shellcheck"

scenario root-with-everything-installed 0 "$all" "$tools" 0 ""
scenario user-with-everything-installed 1000 "$all" "$tools" 0 ""
scenario user-with-everything-installed-and-no-sudo 1000 "$all" "id dpkg-query apt-get" 0 ""

scenario user-without-sudo 1000 "build-essential pkg-config redis-server openssl python3" "id dpkg-query apt-get" 1 "" \
    "you are not root and there is no sudo: as root, run: apt-get install chromium chromium-driver brotli nginx shellcheck"

scenario not-debian 0 "" "id sudo" 0 "" "no dpkg/apt-get here: install $all"

echo "test-setup: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
