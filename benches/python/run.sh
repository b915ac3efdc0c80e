#!/usr/bin/env bash
# Runs the Python side of the predictor benchmark (issue 4) in a project-local venv.
#   benches/python/run.sh [original|eager|all] [extra args for the bench script]
#   (`all` runs both, one after the other, with THREADS threads (default 2); its extra args go to
#   the eager script, e.g. --repo-root DIR or --untrained)
# The venv is .venv-bench/ at the repo root (git-ignored); it is created, and the pinned
# requirements installed, when missing or when requirements.txt changed. Benches run under
# `nice -n 10` (the machine is shared); set NICE=0 to run at normal priority.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="$root/.venv-bench"
req="$here/requirements.txt"
stamp="$venv/.requirements.sha256"
want="$(sha256sum "$req" | cut -d' ' -f1)"

if [[ ! -x "$venv/bin/python" ]]; then
  "${PYTHON:-python3}" -m venv "$venv"
fi
if [[ "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
  "$venv/bin/pip" install --disable-pip-version-check -q -r "$req"
  echo "$want" > "$stamp"
fi

which="${1:-original}"
[[ $# -gt 0 ]] && shift
run() { nice -n "${NICE:-10}" "$venv/bin/python" "$@"; }
case "$which" in
  original) run "$here/original_tft.py" "$@" ;;
  eager)    run "$here/fleetcast_eager.py" "$@" ;;
  all)      t="${THREADS:-2}"; mkdir -p "$root/target"
            run "$here/original_tft.py" --threads "$t" --json-out "$root/target/bench-original-tft-${t}t.json"
            run "$here/fleetcast_eager.py" --threads "$t" --json-out "$root/target/bench-fleetcast-eager-${t}t.json" "$@" ;;
  *) echo "usage: $0 [original|eager|all] [args]" >&2; exit 2 ;;
esac
