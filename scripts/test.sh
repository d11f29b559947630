#!/usr/bin/env bash
# Run the whole test suite on a fresh machine: Debian packages, .venv, requirements, then pytest.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup_env.sh" requirements-test.txt
python -c "from jgan import runtime; runtime.init()"   # the first start compiles Jittor's core once (~2 minutes on 2 cores)
exec python -m pytest -q -rs "$@"
