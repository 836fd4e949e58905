#!/usr/bin/env bash
# `just autobahn`: Autobahn|Testsuite's fuzzing client against Skat's own WebSocket layer.
#
# Installs the suite (pinned in scripts/autobahn-requirements.txt) under Python 2.7 into
# target/autobahn/python, builds the echo harness (`apps/server/examples/autobahn_echo.rs`, the
# crate's `ws` module behind an echo loop), runs every case but 12.* and 13.* (compression,
# which Skat does not offer) against it, and prints how many cases ended in each behavior.
# Reports: target/autobahn/reports/servers (index.html to browse, index.json to parse).
#
# Fails if any case's behavior is not OK, NON-STRICT or INFORMATIONAL, or its closing behavior
# (behaviorClose) is not OK or INFORMATIONAL: a server that echoes everything right but closes
# wrongly (wrong code, not dropping TCP after the close handshake) fails too.
#
# Python 2.7 comes from PATH (python2.7); with pyenv, PYENV_VERSION is 2.7.18 unless a 2.7 was set.
set -euo pipefail

cd "$(dirname "$0")/.."
out=target/autobahn
requirements=scripts/autobahn-requirements.txt

die() {
    echo "autobahn: $*" >&2
    exit 1
}

# pyenv's shims (`just` itself may be one) set PYENV_VERSION to the default Python 3: a 2.7
# wins only when one was chosen.
case "${PYENV_VERSION:-}" in
    2.7*) ;;
    *) export PYENV_VERSION=2.7.18 ;;
esac
if ! python2.7 -c 'import sys; assert sys.version_info[:2] == (2, 7)' 2>/dev/null; then
    die "needs Python 2.7 as python2.7 on PATH (with pyenv: pyenv install 2.7.18)"
fi

# The suite and its dependencies, in a user base of their own; reinstalled when the pins change.
export PYTHONUSERBASE=$PWD/$out/python
if ! cmp -s "$requirements" "$PYTHONUSERBASE/installed.txt"; then
    echo "autobahn: installing Autobahn|Testsuite into $PYTHONUSERBASE" >&2
    python2.7 -m pip install --user --quiet --disable-pip-version-check \
        --no-warn-script-location -r "$requirements"
    cp "$requirements" "$PYTHONUSERBASE/installed.txt"
fi

cargo build --release -p skat-server --example autobahn_echo
target_dir=$(cargo metadata --format-version 1 --no-deps \
    | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')

rm -rf "$out/reports"
mkdir -p "$out"
"$target_dir/release/examples/autobahn_echo" 127.0.0.1:0 >"$out/harness.log" 2>&1 &
harness=$!
trap 'kill "$harness" 2>/dev/null || true; wait "$harness" 2>/dev/null || true' EXIT
url=
for _ in $(seq 100); do
    url=$(sed -n 's/^listening on //p' "$out/harness.log")
    [ -z "$url" ] || break
    kill -0 "$harness" 2>/dev/null || die "the echo harness did not start: $(<"$out/harness.log")"
    sleep 0.1
done
[ -n "$url" ] || die "the echo harness did not say where it listens within 10 s"

cat >"$out/fuzzingclient.json" <<EOF
{
  "outdir": "./reports/servers",
  "servers": [{"agent": "skat", "url": "$url"}],
  "cases": ["*"],
  "exclude-cases": ["12.*", "13.*"],
  "exclude-agent-cases": {}
}
EOF
echo "autobahn: fuzzing client against $url (a few minutes; log in $out/wstest.log)" >&2
(cd "$out" && timeout 1800 "$PYTHONUSERBASE/bin/wstest" -m fuzzingclient -s fuzzingclient.json) \
    >"$out/wstest.log" 2>&1 || die "wstest failed; its log: $out/wstest.log"

python3 - "$out/reports/servers/index.json" <<'EOF'
"""Counts the cases per behavior and fails on any that is not acceptable."""
import collections
import json
import sys

PASSING = {"OK", "NON-STRICT", "INFORMATIONAL"}
PASSING_CLOSE = {"OK", "INFORMATIONAL"}

with open(sys.argv[1]) as f:
    cases = json.load(f)["skat"]


def case_key(case):
    return [int(part) for part in case.split(".")]


counts = collections.Counter(result["behavior"] for result in cases.values())
failed = []
for case in sorted(cases, key=case_key):
    result = cases[case]
    if result["behavior"] not in PASSING or result["behaviorClose"] not in PASSING_CLOSE:
        failed.append(case)
        print("  %-8s behavior %s, close %s" % (case, result["behavior"], result["behaviorClose"]))
    elif result["behavior"] != "OK":
        print("  %-8s %s" % (case, result["behavior"]))
summary = ", ".join("%d %s" % (n, behavior) for behavior, n in sorted(counts.items()))
print("autobahn: %d cases: %s; %d failed" % (len(cases), summary, len(failed)))
sys.exit(1 if failed or not cases else 0)
EOF
