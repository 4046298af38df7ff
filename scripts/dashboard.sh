#!/usr/bin/env bash
# The dashboard's toolchain, for `make run` and `make test`.
#   scripts/dashboard.sh build     npm ci when the lock changed, vite build when sources changed
#   scripts/dashboard.sh check     TypeScript, ESLint, Vitest
#   scripts/dashboard.sh browser   Debian's Chromium for the end-to-end tests (installed if missing)
set -euo pipefail
cd "$(dirname "$0")/../dashboard"

need_node() {
  if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    echo "dashboard: Node.js 20.19+ and npm are needed (https://nodejs.org or apt-get install nodejs npm)" >&2
    return 1
  fi
  local v
  v=$(node -p 'process.versions.node')
  if ! node -e 'const [a,b]=process.versions.node.split(".").map(Number); process.exit(a>20||(a==20&&b>=19)?0:1)'; then
    echo "dashboard: Node.js $v is too old: 20.19 or newer is needed" >&2
    return 1
  fi
}

deps() {
  # Reinstall only when package-lock.json changed since the last install.
  if [[ ! -f node_modules/.lock-stamp ]] || ! cmp -s package-lock.json node_modules/.lock-stamp; then
    echo "dashboard: installing dependencies (npm ci)..."
    npm ci --no-audit --no-fund --loglevel=error
    cp package-lock.json node_modules/.lock-stamp
  fi
}

build() {
  need_node
  deps
  local newest
  newest=$(find src index.html vite.config.ts package-lock.json -type f -newer dist/index.html 2>/dev/null | head -1 || true)
  if [[ -f dist/index.html && -z "$newest" ]]; then
    echo "dashboard: dist/ is up to date"
    return
  fi
  echo "dashboard: building..."
  npm run --silent build
}

check() {
  need_node
  deps
  ../scripts/gen-api.sh --check  # src/types/openapi.ts is what the API describes
  npm run --silent typecheck
  npm run --silent lint
  npm run --silent test -- --reporter=dot
}

browser() {
  if [[ -x /usr/bin/chromium ]]; then return; fi
  if [[ $(id -u) -ne 0 ]]; then
    echo "dashboard: the end-to-end tests need Chromium: apt-get install chromium" >&2
    return 1
  fi
  echo "dashboard: installing Chromium (Debian package) for the end-to-end tests..."
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null \
    || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null; }
}

case "${1:-}" in
  build) build ;;
  check) check ;;
  browser) browser ;;
  *) echo "usage: $0 build|check|browser" >&2; exit 2 ;;
esac
