#!/usr/bin/env bash
# The whole test suite, as a newcomer and CI run it: installs pcapstate with its
# test dependencies, installs tcpdump, tshark and chromium when they are missing
# (as root, through apt-get), then runs pytest.  Extra arguments go to pytest.
# tcpdump and tshark are the conformance references; chromium renders the HTML
# report in tests/test_report_html.py.
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m pip install --quiet --disable-pip-version-check -e '.[test]'

missing=()
for tool in tcpdump tshark chromium; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if ((${#missing[@]})); then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "tests/run.sh: installing ${missing[*]} (the conformance and report tests use them)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "tests/run.sh: ${missing[*]} missing: install them (e.g. sudo apt-get install ${missing[*]})" >&2
    exit 1
  fi
fi

exec python3 -m pytest "$@"
