#!/usr/bin/env bash
# Make (or reuse) the Python virtualenv the tests use, from Debian's /usr/bin/python3: a pyenv
# Python is built without loadable-extension support and cannot load vekter.
# Usage: scripts/venv.sh VENV_DIR REQUIREMENTS_FILE
set -euo pipefail
venv=$1
req=$2
stamp="$venv/.requirements.sha256"
want=$(sha256sum "$req" | cut -d' ' -f1)
if [ -x "$venv/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
  exit 0
fi
rm -rf "$venv"
/usr/bin/python3 -m venv "$venv"
"$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$req"
echo "$want" > "$stamp"
