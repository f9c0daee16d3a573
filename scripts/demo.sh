#!/usr/bin/env bash
# Set up (idempotent) and start the browser demo. With no Yandex credentials in the
# environment it runs offline on the built-in Yandex Cloud emulator.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/voicebot serve "$@"
