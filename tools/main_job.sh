#!/usr/bin/env bash
# The main job: set up, build, then check and summarize the experiment graphs.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh
KILN=${KILN_BUILD_DIR:-build}/tools/kiln
"$KILN" check graphs/*.json
for g in graphs/*.json; do echo; "$KILN" summary "$g"; done
