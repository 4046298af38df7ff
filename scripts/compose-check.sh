#!/usr/bin/env bash
# Compose files checked with compose-go, the loader of `docker compose` itself (no Docker engine):
#
#   scripts/compose-check.sh path          build the checker when it is not cached, print its path
#   scripts/compose-check.sh FILE...       load FILE(s): the normalized project as JSON on stdout,
#                                          or the loader's error and exit 1
#
# The checker is tests/deploy/composecheck (a few lines of Go on github.com/compose-spec/compose-go
# v2, pinned by its go.mod/go.sum), built from the Go module proxy (about 30 s the first time) into
# ~/.cache/iotmon/compose-check-<sha of its sources>/, like the Kafka jars of scripts/infra.sh.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
SRC="$REPO/tests/deploy/composecheck"
if [[ -n "${IOTMON_TOOLS_CACHE:-}" ]]; then
    CACHE="$IOTMON_TOOLS_CACHE"
elif [[ -n "${HOME:-}" ]]; then
    CACHE="$HOME/.cache/iotmon"
else
    CACHE="$REPO/var/tools"
fi
SHA="$(cat "$SRC/go.mod" "$SRC/go.sum" "$SRC/main.go" | sha256sum | cut -c1-16)"
DIR="$CACHE/compose-check-$SHA"
BIN="$DIR/compose-check"

die() { echo "compose-check.sh: $*" >&2; exit 1; }

find_go() {
    if command -v go >/dev/null 2>&1; then command -v go; return; fi
    [[ -x /usr/local/go/bin/go ]] && { echo /usr/local/go/bin/go; return; }
    die "no Go toolchain (go, /usr/local/go/bin/go): the checker is built from the Go module proxy"
}

build() {
    local go log
    go="$(find_go)"
    mkdir -p "$DIR"
    log="$DIR/build.log"
    echo "compose-check.sh: building the compose checker into $DIR (first time only) ..." >&2
    if ! (cd "$SRC" && GOFLAGS="-mod=readonly" CGO_ENABLED=0 \
        "$go" build -trimpath -o "$BIN.tmp.$$" .) >"$log" 2>&1; then
        tail -n 30 "$log" >&2
        rm -f "$BIN.tmp.$$"
        die "building the compose checker failed"
    fi
    mv -f "$BIN.tmp.$$" "$BIN"
}

checker() {
    if [[ ! -x "$BIN" ]]; then
        mkdir -p "$CACHE"
        exec 9>"$CACHE/compose-check.lock"
        flock 9
        [[ -x "$BIN" ]] || build
        exec 9>&-
    fi
    echo "$BIN"
}

case "${1:-}" in
    path) checker ;;
    "") sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
    *) exec "$(checker)" "$@" ;;
esac
