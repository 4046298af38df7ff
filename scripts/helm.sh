#!/usr/bin/env bash
# Helm for the chart's checks (tests/deploy): built from the Go module proxy, cached by version.
#
#   scripts/helm.sh path      build Helm when it is not cached yet, print the binary's path
#   scripts/helm.sh ARGS...   run that Helm with ARGS (e.g. scripts/helm.sh lint --strict deploy/helm/iotmon)
#
# No prebuilt binary is downloaded: `go install helm.sh/helm/v3/cmd/helm@$HELM_VERSION` builds it
# (about 3 minutes on 2 cores the first time), into ~/.cache/iotmon/helm-<version>/helm, like the
# Kafka jars of scripts/infra.sh. Later runs find it there at once.
#
# Environment knobs (all optional):
#   IOTMON_HELM_VERSION   default: v3.22.0
#   IOTMON_HELM           a Helm binary to use instead (no build)
#   IOTMON_TOOLS_CACHE    default: ~/.cache/iotmon (or <repo>/var/tools without a HOME)
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
HELM_VERSION="${IOTMON_HELM_VERSION:-v3.22.0}"
if [[ -n "${IOTMON_TOOLS_CACHE:-}" ]]; then
    CACHE="$IOTMON_TOOLS_CACHE"
elif [[ -n "${HOME:-}" ]]; then
    CACHE="$HOME/.cache/iotmon"
else
    CACHE="$REPO/var/tools"
fi
DIR="$CACHE/helm-$HELM_VERSION"
HELM="$DIR/helm"

die() { echo "helm.sh: $*" >&2; exit 1; }

find_go() {
    if command -v go >/dev/null 2>&1; then command -v go; return; fi
    [[ -x /usr/local/go/bin/go ]] && { echo /usr/local/go/bin/go; return; }
    die "no Go toolchain (go, /usr/local/go/bin/go): Helm is built from the Go module proxy"
}

build() {
    local go tmp log
    go="$(find_go)"
    mkdir -p "$CACHE"
    tmp="$(mktemp -d "$CACHE/helm-build.XXXXXX")"
    log="$tmp/build.log"
    echo "helm.sh: building Helm $HELM_VERSION with $("$go" version | cut -d' ' -f3) into $DIR (first time only, a few minutes) ..." >&2
    # -mod=mod: the module's own go.mod decides; -trimpath: the same binary wherever it builds.
    if ! GOBIN="$tmp/bin" GOFLAGS="-mod=mod" CGO_ENABLED=0 \
        "$go" install -trimpath "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" >"$log" 2>&1; then
        tail -n 30 "$log" >&2
        rm -rf "$tmp"
        die "building Helm $HELM_VERSION failed"
    fi
    "$tmp/bin/helm" version --short >/dev/null || { rm -rf "$tmp"; die "the built Helm does not run"; }
    mkdir -p "$DIR"
    mv -f "$tmp/bin/helm" "$HELM.tmp.$$"
    mv -f "$HELM.tmp.$$" "$HELM"   # atomic: a concurrent run sees no half-written binary
    rm -rf "$tmp"
    echo "helm.sh: $HELM" >&2
}

helm_path() {
    if [[ -n "${IOTMON_HELM:-}" ]]; then echo "$IOTMON_HELM"; return; fi
    if [[ ! -x "$HELM" ]]; then
        mkdir -p "$CACHE"
        # One build at a time (make test and a test run started by hand may both ask).
        exec 9>"$CACHE/helm-$HELM_VERSION.lock"
        flock 9
        [[ -x "$HELM" ]] || build
        exec 9>&-
    fi
    echo "$HELM"
}

case "${1:-}" in
    path) helm_path ;;
    "") sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
    *) exec "$(helm_path)" "$@" ;;
esac
