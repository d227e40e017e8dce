#!/usr/bin/env bash
# The system packages seglab's tests need beyond the virtual environment, installed from the
# distribution's registry (apt) when missing, so that `make test` from a fresh clone runs everything.
#
# Idempotent and quiet: when everything is installed it checks (dpkg-query, a few ms per package) and
# prints nothing. When something is missing it installs it with apt-get as root, or through sudo when
# that needs no password; where it cannot (no apt-get, no root), it prints one line naming the tests
# that will be skipped and exits 0 (set SEGLAB_SETUP_SYSTEM_STRICT=1 to fail instead, e.g. in CI).
#
# Called by the Makefile's `setup` target (every `make test` / `make demo`); run it by hand as root:
#   bash scripts/setup_system.sh
set -uo pipefail

# "<Debian package>|<the tests that need it>"; add a line for a new system dependency.
PACKAGES=(
    "postgresql|tests/integration/test_tracking_server.py (a real PostgreSQL behind the MLflow server)"
    "chromium|tests/integration/test_mlflow_ui.py (the MLflow UI in a real headless browser)"
    "chromium-driver|tests/integration/test_mlflow_ui.py (selenium drives chromium through chromedriver)"
)

strict=${SEGLAB_SETUP_SYSTEM_STRICT:-0}
say() { echo "setup_system: $*" >&2; }
give_up() {  # one line: what is missing, which tests skip; exit 0 unless strict
    local tests
    tests=$(printf '%s; ' "${why[@]}")
    say "$1; missing: ${missing[*]} -> skipped: ${tests%; }"
    [[ $strict == 1 ]] && exit 1
    exit 0
}

installed() { [[ $(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null) == installed ]]; }

missing=() why=()
have_dpkg=0
command -v dpkg-query >/dev/null 2>&1 && have_dpkg=1
for entry in "${PACKAGES[@]}"; do
    pkg=${entry%%|*}
    if (( have_dpkg )) && installed "$pkg"; then
        continue
    fi
    missing+=("$pkg") why+=("${entry#*|}")
done
(( ${#missing[@]} )) || exit 0

command -v apt-get >/dev/null 2>&1 || give_up "no apt-get here (not Debian/Ubuntu): install them with your package manager"
if [[ $(id -u) == 0 ]]; then
    as_root=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    as_root=(sudo -n)
else
    give_up "not root and no password-less sudo: run 'sudo bash scripts/setup_system.sh' once"
fi

say "installing ${missing[*]} (apt-get)"
log=$(mktemp "${TMPDIR:-/tmp}/seglab-setup-system.XXXXXX")
trap 'rm -f "$log"' EXIT
export DEBIAN_FRONTEND=noninteractive
for pkg in "${missing[@]}"; do
    if [[ $pkg == postgresql ]]; then
        # Only the binaries are needed (tests run their own throwaway cluster on a free port), so ask
        # Debian's postgresql-common not to create and start its default cluster on port 5432.
        "${as_root[@]}" mkdir -p /etc/postgresql-common/createcluster.d
        printf '# seglab: the tests start their own clusters\ncreate_main_cluster = false\n' \
            | "${as_root[@]}" tee /etc/postgresql-common/createcluster.d/seglab.conf >/dev/null
    fi
done
# A fresh container has no package lists: update first (this path runs only when something is missing).
if ! { "${as_root[@]}" apt-get update -qq \
       && "${as_root[@]}" apt-get install -y -qq --no-install-recommends -o Dpkg::Use-Pty=0 "${missing[@]}"; } \
       >"$log" 2>&1; then
    tail -n 5 "$log" >&2
    give_up "apt-get failed (see above)"
fi
say "installed ${missing[*]}"
