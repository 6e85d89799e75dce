#!/usr/bin/env bash
# The test command: installs the pinned environment if needed, then
#   1. unit tests of the package (tests/),
#   2. nbval: re-executes every notebook and compares the outputs of its checked cells (notebooks/),
#   3. regression checks of what the notebooks exported against the committed results (tests_exports/).
# Extra arguments go to pytest (e.g. ./run_tests.sh tests  to run the unit tests alone).
set -euo pipefail
cd "$(dirname "$0")"
source scripts/ensure_env.sh
# The browser test (tests_exports/test_browser.py) drives Debian's chromium with Playwright
# (Playwright's own browser download is not reachable here): install it where it is missing.
if [ -z "${RCP217_CHROMIUM:-}" ] && ! command -v chromium >/dev/null && ! command -v chromium-browser >/dev/null; then
  echo "== installing chromium (apt) for the browser test"
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
if [ "$#" -eq 0 ]; then
  set -- tests notebooks tests_exports
fi
exec python -m pytest --nbval-lax --nbval-cell-timeout=3600 -p no:cacheprovider "$@"
