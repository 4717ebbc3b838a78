#!/usr/bin/env bash
# Create the project's environment in .venv (Python 3.11) from requirements.txt. Safe to rerun.
# ffmpeg (for vggss_dl.py only) comes from your system: apt-get install ffmpeg, or conda install ffmpeg.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -r requirements.txt
