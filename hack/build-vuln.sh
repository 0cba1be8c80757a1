#!/usr/bin/env bash
# build-vuln.sh builds govulncheck (GOVULNCHECK_VERSION) and an offline copy of
# the Go vulnerability database (VULNDB_VERSION, a pseudo-version of the
# golang.org/x/vulndb module, whose data/osv holds every report as OSV JSON),
# indexed by vulndb's own cmd/indexdb into the layout `govulncheck -db
# file://DIR` reads. Both are cached in $CSRGUARD_CACHE; it prints
# "GOVULNCHECK_DIR DB_DIR". The database is as new as the pinned vulndb
# version: bump VULNDB_VERSION to learn of newer vulnerabilities. Cold: about
# 2.5 min (govulncheck 20 s, indexdb 2 min with its module downloads, the
# index 6 s).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

GOVULNCHECK_VERSION="$(strip_v "$GOVULNCHECK_VERSION")"
build_go_tool govulncheck golang.org/x/vuln "$GOVULNCHECK_VERSION" golang.org/x/vuln/cmd/govulncheck "~20 s"

vulndb="${VULNDB_VERSION#v}"
build_go_tool indexdb golang.org/x/vulndb "$vulndb" golang.org/x/vulndb/cmd/indexdb "~2 min"

db="$CSRGUARD_CACHE/vulndb/$VULNDB_VERSION"
if [[ ! -f "$db/index/db.json" ]]; then
  index() {
    export GOFLAGS=-mod=mod GOWORK=off
    local src
    src="$(cd "$CSRGUARD_CACHE/tools" && go mod download -json "golang.org/x/vulndb@$VULNDB_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
    rm -rf "$db.work"
    "$CSRGUARD_CACHE/tools/indexdb-v$vulndb/indexdb" -out "$db.work" -vulns "$src/data/osv"
    rm -rf "$db" && mv "$db.work" "$db"
  }
  build_step "the Go vulnerability database $VULNDB_VERSION" "vulndb-$VULNDB_VERSION" "~10 s" index
fi
echo "$CSRGUARD_CACHE/tools/govulncheck-v$GOVULNCHECK_VERSION $db"
