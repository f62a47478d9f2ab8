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
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
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
