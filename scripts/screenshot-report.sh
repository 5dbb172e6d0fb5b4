#!/usr/bin/env bash
# Take a headless screenshot of the HTML report, to look at it as a reader would.
#
#   scripts/screenshot-report.sh [REPORT_HTML] [OUT_PNG] [WIDTH,HEIGHT]
#
# Defaults: reports/index.html, reports/index.png, 1400,2400. Needs chromium
# (Debian: apt-get install -y chromium). Runs offline: the report references nothing outside itself.
set -euo pipefail

html="${1:-reports/index.html}"
png="${2:-reports/index.png}"
size="${3:-1400,2400}"

if [[ ! -f "$html" ]]; then
  echo "screenshot-report: no report at $html (run 'deltaspace report' first)" >&2
  exit 2
fi
browser="$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)"
if [[ -z "$browser" ]]; then
  echo "screenshot-report: chromium not found (Debian: apt-get install -y chromium)" >&2
  exit 2
fi

profile="$(mktemp -d)"
trap 'rm -rf "$profile"' EXIT
mkdir -p "$(dirname "$png")"
"$browser" --headless --no-sandbox --disable-gpu --disable-background-networking --disable-component-update \
  --disable-sync --no-first-run --hide-scrollbars --user-data-dir="$profile" \
  --screenshot="$(realpath -m "$png")" --window-size="$size" "file://$(realpath "$html")" 2>/dev/null
echo "wrote $png"
