#!/usr/bin/env bash
# The main job: set up, build, check the experiment graphs, prepare the data,
# then reproduce the seed's experiments (quick sizes) into reports/.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh
KILN=${KILN_BUILD_DIR:-build}/tools/kiln
"$KILN" check graphs/*.json
for g in graphs/*.json; do echo; "$KILN" summary "$g"; done
echo
if [ -d ../shared/data ]; then
  "$KILN" data prepare --from ../shared/data
else
  "$KILN" data prepare
fi
"$KILN" reproduce --quick --out reports
