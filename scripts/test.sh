#!/usr/bin/env bash
# The one test command: installs what the tests need when it is missing,
# starts the services they use, then checks formatting, vets and runs every
# test with the race detector. Run as root (the nftables and namespace
# tests need it; CI runs as root).
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v nft >/dev/null || need+=(nftables)
command -v ip >/dev/null || need+=(iproute2)
command -v chromium >/dev/null || need+=(chromium)
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || need+=(postgresql)
# Debian's checker for the .deb packages, and rpm to read the .rpm ones
# (scripts/package's test); about a minute to install.
command -v lintian >/dev/null || need+=(lintian)
command -v rpm >/dev/null || need+=(rpm)
# systemd-analyze verifies the packaged units (no systemd needs to run).
command -v systemd-analyze >/dev/null || need+=(systemd)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# From the npm registry, installed once for the run: Microsoft's
# JavaScript SDK for the Azure API's JavaScript test, and axe-core for the
# console's accessibility test (each test skips, saying why, without its
# package); before the PostgreSQL cluster, whose cleanup adds to this EXIT
# trap.
if command -v npm >/dev/null && { [ -z "${AJAR_TEST_JS_MODULES:-}" ] || [ -z "${AJAR_TEST_AXE:-}" ]; }; then
  npmdir=$(mktemp -d)
  trap 'rm -rf "$npmdir"' EXIT
  if [ -z "${AJAR_TEST_JS_MODULES:-}" ]; then
    mkdir "$npmdir/js"
    cp internal/azureapi/testdata/js/package.json internal/azureapi/testdata/js/package-lock.json "$npmdir/js"/
    if (cd "$npmdir/js" && npm ci --prefer-offline --no-audit --no-fund --ignore-scripts >/dev/null); then
      export AJAR_TEST_JS_MODULES="$npmdir/js/node_modules"
    else
      echo "warning: npm ci failed here; the JavaScript SDK test installs its own copy"
    fi
  fi
  if [ -z "${AJAR_TEST_AXE:-}" ]; then
    mkdir "$npmdir/axe"
    cp internal/console/testdata/axe/package.json internal/console/testdata/axe/package-lock.json "$npmdir/axe"/
    if (cd "$npmdir/axe" && npm ci --prefer-offline --no-audit --no-fund --ignore-scripts >/dev/null); then
      export AJAR_TEST_AXE="$npmdir/axe/node_modules/axe-core/axe.min.js"
    else
      echo "warning: npm ci of axe-core failed here; the console's accessibility test skips"
    fi
  fi
fi

# PostgreSQL for the store compliance suite and the replica tests.
if [ -z "${AJAR_TEST_POSTGRES:-}" ] && [ -f scripts/postgres-test-cluster.sh ]; then
  # shellcheck source=/dev/null
  source scripts/postgres-test-cluster.sh
fi

echo "== gofmt"
bad=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$bad" ]; then echo "not gofmt-formatted:"; echo "$bad"; exit 1; fi
echo "== go vet"
go vet ./...
echo "== go test -race"
go test -race -count=1 -timeout 40m ./...
