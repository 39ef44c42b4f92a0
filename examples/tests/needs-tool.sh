#!/bin/sh
# Skips (exit 77 with "skip_exit_code": 77) when a tool it needs is missing.
command -v python3 >/dev/null 2>&1 || { echo "python3 not installed"; exit 77; }
python3 -c 'import sys; print("python", sys.version.split()[0])'
