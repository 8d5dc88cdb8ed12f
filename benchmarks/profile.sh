#!/usr/bin/env bash
# Profile relaygate under single-target load with py-spy (installed into the venv if
# missing) and summarise the top frames into benchmarks/README.md.
#
#   bash benchmarks/profile.sh              20 s profile
#   bash benchmarks/profile.sh --profile 60 a longer one
#
# Output: benchmarks/results/profile.speedscope.json (open in speedscope) and
# benchmarks/results/profile.json (the summary), plus the README's profile section.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
exec bash "$HERE/run.sh" --profile-only "$@"
