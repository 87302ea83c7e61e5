#!/bin/sh
# Prints the path of the Python that builds .venv, or one line saying why none will do (exit 1).
#
#   tools/supported_python.sh            the first of python3.13, python3.12, python3.11, python3 on PATH
#                                        whose version is supported
#   tools/supported_python.sh PYTHON     PYTHON itself (make PYTHON=...), checked the same way
#
# Supported means the pinned requirements.txt installs on it: 3.11 to 3.13. Below, numpy 2.4.6 and
# atpublic 9.0.0 need 3.11; above, tensorflow 2.21.0 and h5py 3.14.0 ship no 3.14 wheels.
# docs/reproducibility.md lists the versions that reproduced the committed dvc.lock.
SUPPORTED="3.11, 3.12 or 3.13"
is_supported='import sys; sys.exit(not (3, 11) <= sys.version_info[:2] <= (3, 13))'
newline='
'
version_of() {  # the first line of `$1 --version`: pyenv's shims say more when no version is selected
  version=$("$1" --version 2>&1)
  echo "${version%%"$newline"*}"
}

if [ -n "$1" ]; then
  path=$(command -v "$1") || { echo "error: PYTHON=$1 is not a command; give the path of a Python $SUPPORTED" >&2; exit 1; }
  if "$path" -c "$is_supported" 2>/dev/null; then echo "$path"; exit 0; fi
  echo "error: PYTHON=$1 is $(version_of "$path"); the pinned requirements install on Python $SUPPORTED only" >&2
  exit 1
fi

found=""
for name in python3.13 python3.12 python3.11 python3; do
  path=$(command -v "$name") || continue
  if "$path" -c "$is_supported" 2>/dev/null; then echo "$path"; exit 0; fi
  found="$found, $name is $(version_of "$path")"
done
echo "error: no Python $SUPPORTED on PATH (tried python3.13, python3.12, python3.11, python3${found:+; ${found#, }});" \
  "install one, or point make at one: make PYTHON=/path/to/python3.12 repro" >&2
exit 1
