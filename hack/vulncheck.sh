#!/usr/bin/env bash
# vulncheck.sh runs govulncheck, with the offline database build-vuln.sh
# makes, on csrguard (./... or the packages given). It fails on every
# vulnerability csrguard's code reaches unless hack/govulncheck-accepted.txt
# accepts it with a reason (test/cmd/vulncheck says how).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

read -r bin db < <(hack/build-vuln.sh)
exec go run ./test/cmd/vulncheck -govulncheck "$bin/govulncheck" -db "$db" -accepted hack/govulncheck-accepted.txt "$@"
