"""sqlfix against its peers, one run: per-test medians, p10/p90 and ratios.

    python tests/benchmarks/bench_perf.py          # the full run (several minutes)
    python tests/benchmarks/bench_perf.py --short  # a quick pass, the shape only (CI)

Every contender gets the same schema (the example shop's) and the same rendered
fixtures, in the same run, interleaved round by round so load on the machine hits
them alike. Sections: per-test contenders at 20/200/2,000 rows, drift over many
tests, pytest-xdist -n 2 against -n 0 (embedded and DSN), server start cold and
cached, the schema cache. Figures, not assertions: machines are shared and noisy.
"""

from __future__ import annotations

import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
from psycopg import sql

from sqlfix.config import Settings
from sqlfix.database.session import DatabaseSession
from sqlfix.pytest_plugin.handle import Sqlfix

REPO = Path(__file__).resolve().parents[2]
SHOP = REPO / "fixtures_sql"
TABLES = b"users, products, orders, order_items"
SIZES = (20, 200, 2000)

# N rows over users, products, orders, order_items (N/4 each): a fixture file of that size.
SIZED = """-- requires: users.sql
{% set n = SIZE // 4 %}
INSERT INTO users (id, email, full_name, created_at) VALUES
{% for i in range(n) %}({{ id('users', 'u' ~ i) }}, {{ 'u' ~ i ~ '@x.org' }}, {{ fake.name() }}, {{ now }}){% if not loop.last %},{% endif %}
{% endfor %};
INSERT INTO products (id, sku, name, price_cents, stock) VALUES
{% for i in range(n) %}({{ id('products', 'p' ~ i) }}, {{ 'sku' ~ i }}, {{ 'P' ~ i }}, {{ 100 + i }}, 5){% if not loop.last %},{% endif %}
{% endfor %};
INSERT INTO orders (id, user_id, status, placed_at) VALUES
{% for i in range(n) %}({{ id('orders', 'o' ~ i) }}, {{ id('users', 'u' ~ i) }}, 'paid', {{ now }}){% if not loop.last %},{% endif %}
{% endfor %};
INSERT INTO order_items (order_id, product_id, quantity, price_cents) VALUES
{% for i in range(n) %}({{ id('orders', 'o' ~ i) }}, {{ id('products', 'p' ~ i) }}, 1, {{ 100 + i }}){% if not loop.last %},{% endif %}
{% endfor %};
"""
BODY = b"UPDATE users SET full_name = full_name || '!' WHERE id % 2 = 0"


def stats(samples: list[float]) -> tuple[float, float, float]:
    """(median, p10, p90) in ms."""
    ms = sorted(s * 1000 for s in samples)
    pick = lambda q: ms[min(len(ms) - 1, int(q * len(ms)))]  # noqa: E731
    return statistics.median(ms), pick(0.1), pick(0.9)


def make_project(root: Path) -> Path:
    fixtures = root / "fixtures_sql"
    shutil.copytree(SHOP, fixtures)
    for size in SIZES:
        (fixtures / f"rows_{size}.sql").write_text(SIZED.replace("SIZE", str(size)))
    return fixtures


class Bench:
    def __init__(self, root: Path, short: bool) -> None:
        self.short = short
        fixtures = make_project(root)
        settings = Settings(root=root, fixtures_dir=fixtures, schema=(fixtures / "schema.sql",))
        self.session = DatabaseSession(settings)
        self.session.start()
        assert self.session.dsn is not None and self.session.server is not None
        self.dsn = self.session.dsn
        self.plain = psycopg.connect(self.dsn)
        self.admin = psycopg.connect(self.dsn.replace("sqlfix_test", "postgres"), autocommit=True)
        # a template nobody is connected to (PostgreSQL refuses to copy one in use)
        self.admin.execute(b"CREATE DATABASE bench_template")
        with psycopg.connect(self.dsn.replace("sqlfix_test", "bench_template")) as conn:
            conn.execute((fixtures / "schema.sql").read_bytes())
        # savepoint layers: a session of their own (on a copy of the schema), so that the
        # other contenders' tests do not end the layer stack between its rounds
        self.layered: dict[str, DatabaseSession] = {}  # one per layered contender
        for name in ("shared_test", "changing_test"):
            self.admin.execute(f"CREATE DATABASE {name} TEMPLATE bench_template".encode())
            self.layered[name] = DatabaseSession(Settings(
                root=root, fixtures_dir=fixtures, layers=True, layers_max_tests=10**9,
                dsn=self.dsn.replace("sqlfix_test", name)))
            self.layered[name].start()
        self.plans: list[tuple[str, ...]] = []
        self.turn = 0

    def sqlfix_test(self, names: tuple[str, ...]) -> None:
        """One test as the plugin runs it: plan, begin, load + protect, body, checks, end."""
        boundary = self.session.boundary()
        handle = Sqlfix(self.session, boundary)
        boundary.begin()
        handle.load(*names)
        if not boundary.is_protected:
            boundary.protect()
        boundary.conn.execute(BODY)
        assert boundary.broken() is None and boundary.broken() is None
        boundary.end()

    def layered_test(self, session: DatabaseSession, names: tuple[str, ...],
                     after: tuple[str, ...]) -> None:
        """A test with layers on whose next test loads `after`."""
        boundary = session.begin(layered=True)
        handle = Sqlfix(session, boundary)
        handle.load(*names)
        if not boundary.is_protected:
            boundary.protect()
        boundary.conn.execute(BODY)
        assert boundary.broken() is None and boundary.broken() is None
        boundary.end(keep=session.library.order(after))

    def shared_test(self, names: tuple[str, ...]) -> None:
        """Layers, and the next test has the same fixtures (a class or module mark)."""
        self.layered_test(self.layered["shared_test"], names, names)

    def changing_test(self, names: tuple[str, ...]) -> None:
        """Layers, a different set each test (they share users.sql and the sized file)."""
        del names  # its own rotation: the others get one plan for a block of rounds
        self.turn += 1
        plans = self.plans
        now, after = plans[self.turn % len(plans)], plans[(self.turn + 1) % len(plans)]
        self.layered_test(self.layered["changing_test"], now, after)

    def plain_test(self, names: tuple[str, ...]) -> None:
        """The floor: the same rendered SQL on a plain connection, then ROLLBACK."""
        self.plain.execute(self._sql(names))
        self.plain.execute(BODY)
        self.plain.rollback()

    def truncate_test(self, names: tuple[str, ...]) -> None:
        self.plain.execute(self._sql(names))
        self.plain.execute(BODY)
        self.plain.commit()
        self.plain.execute(b"TRUNCATE " + TABLES + b" RESTART IDENTITY CASCADE")
        self.plain.commit()

    def template_test(self, names: tuple[str, ...]) -> None:
        """A database per test cloned from the schema's (what pytest-postgresql's janitor does)."""
        self.admin.execute(b"CREATE DATABASE per_test TEMPLATE bench_template")
        with psycopg.connect(self.dsn.replace("sqlfix_test", "per_test")) as conn:
            conn.execute(self._sql(names))
            conn.execute(BODY)
            conn.commit()
        self.admin.execute(b"DROP DATABASE per_test")

    def _sql(self, names: tuple[str, ...]) -> bytes:
        return "\n".join(f.rendered.sql for f in self.session.library.plan(names)).encode()

    def vacuum(self) -> None:
        self.admin.execute(b"SELECT 1")
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(b"VACUUM")

    def contenders(self, size: int) -> dict[str, tuple[Callable[[tuple[str, ...]], None], int]]:
        """name -> (one test, rounds); slow contenders get fewer rounds."""
        rounds = 15 if self.short else 300
        return {
            "plain floor (psycopg, rendered SQL, ROLLBACK)": (self.plain_test, rounds),
            "sqlfix, a different fixture set each test": (self.sqlfix_test, rounds),
            "sqlfix + layers, the same set as the test before": (self.shared_test, rounds),
            "sqlfix + layers, a different set each test": (self.changing_test, rounds),
            "committed load + TRUNCATE ... RESTART IDENTITY CASCADE": (self.truncate_test, rounds),
            "database per test from a template": (self.template_test, 3 if self.short else 40),
        }

    def per_test(self, size: int) -> None:
        # "different each test": the sized file alternates with the shop's own sets
        plans = self.plans = [(f"rows_{size}.sql",), (f"rows_{size}.sql", "orders.sql"),
                              (f"rows_{size}.sql", "inventory_audit.sql")]
        contenders = self.contenders(size)
        samples: dict[str, list[float]] = {name: [] for name in contenders}
        for one, _ in contenders.values():  # warm-up: renders cached, server warm
            one(plans[0])
        self.vacuum()
        top = max(r for _, r in contenders.values())
        for i in range(top):
            order = list(contenders.items())
            random.shuffle(order)  # interleaved: no contender always runs first
            for name, (one, rounds) in order:
                if i < rounds:
                    began = time.perf_counter()
                    # each plan for a block of rounds: a shared set is shared in a block
                    one(plans[i * len(plans) // top])
                    samples[name].append(time.perf_counter() - began)
        base = statistics.median(samples["sqlfix, a different fixture set each test"]) * 1000
        print(f"\n## per test, {size} rows (+ users.sql), medians of interleaved rounds")
        print(f"{'contender':58} {'median':>8} {'p10':>8} {'p90':>8} {'x sqlfix':>8}")
        for name, values in samples.items():
            med, p10, p90 = stats(values)
            print(f"{name:58} {med:8.3f} {p10:8.3f} {p90:8.3f} {med / base:8.2f}")
        shared = statistics.median(samples["sqlfix + layers, the same set as the test before"])
        floor = statistics.median(samples["plain floor (psycopg, rendered SQL, ROLLBACK)"])
        truncate = statistics.median(
            samples["committed load + TRUNCATE ... RESTART IDENTITY CASCADE"])
        print(f"ratios: sqlfix / floor {base / 1000 / floor:.2f}; layers shared / floor "
              f"{shared / floor:.2f}; TRUNCATE / sqlfix {truncate * 1000 / base:.2f}; "
              f"TRUNCATE / layers shared {truncate / shared:.2f}")
        print(f"{'pytest-postgresql postgresql fixture':58} " + (
            "installed, not wired in" if _installed("pytest_postgresql") else "not installed"))

    def drift(self) -> None:
        tests = 600 if self.short else 5000
        self.vacuum()
        times = []
        for i in range(tests):
            began = time.perf_counter()
            self.sqlfix_test(("rows_200.sql",) if i % 2 else ("rows_200.sql", "orders.sql"))
            times.append(time.perf_counter() - began)
        early = statistics.median(times[100:350]) * 1000
        late = statistics.median(times[-250:]) * 1000
        print(f"\n## drift over {tests} tests (sqlfix, 200 rows)")
        print(f"tests 100-350 median {early:.3f} ms; last 250 median {late:.3f} ms; "
              f"ratio {late / early:.2f}")

    def close(self) -> None:
        self.plain.close()
        for session in self.layered.values():
            session.stop()
        self.admin.close()
        self.session.stop()


def _installed(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


XDIST_TEST = """
import pytest
from sqlfix import uses

@uses("users.sql", "orders.sql")
@pytest.mark.parametrize("n", range({n}))
def test_n(sqlfix_conn, n):
    sqlfix_conn.execute("UPDATE users SET full_name = 'x' WHERE id %% 2 = 0")
"""


def run_pytest(project: Path, *args: str) -> float:
    began = time.perf_counter()
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:randomly",
                    "-p", "no:cacheprovider", *args], cwd=project, check=True,
                   capture_output=True)
    return time.perf_counter() - began


def xdist(root: Path, dsn: str, short: bool) -> None:
    tests = 40 if short else 1000
    project = root / "xdist"
    project.mkdir()
    shutil.copytree(SHOP, project / "fixtures_sql")
    (project / "pyproject.toml").write_text('[tool.sqlfix]\nschema = ["fixtures_sql/schema.sql"]\n')
    (project / "test_many.py").write_text(XDIST_TEST.replace("{n}", str(tests)).replace("%%", "%"))
    print(f"\n## pytest-xdist, {tests} tests, wall time of the whole run")
    for label, extra in (("embedded", []), ("DSN", [f"--sqlfix-dsn={dsn}"])):
        serial = run_pytest(project, "-n", "0", *extra)
        parallel = run_pytest(project, "-n", "2", *extra)
        print(f"{label:9} -n 0 {serial:7.2f} s  -n 2 {parallel:7.2f} s  "
              f"throughput x{serial / parallel:.2f}")


def server_start(root: Path, short: bool) -> None:
    import os

    from sqlfix.database.server import EmbeddedServer

    print("\n## embedded server start")
    cold = root / "cold-cache"
    began = time.perf_counter()
    EmbeddedServer.start(cache_dir=cold).stop()
    cold_s = time.perf_counter() - began
    cached = []
    for _ in range(2 if short else 5):
        began = time.perf_counter()
        EmbeddedServer.start().stop()
        cached.append(time.perf_counter() - began)
    print(f"cold (initdb) {cold_s * 1000:8.0f} ms; cached median "
          f"{statistics.median(cached) * 1000:8.0f} ms")
    del os


def schema_cache(root: Path, short: bool) -> None:
    build = 0.5 if short else 5.0
    project = root / "schema-cache"
    fixtures = make_project(project)
    (fixtures / "schema.sql").write_text(
        (SHOP / "schema.sql").read_text() + f"\n-- {project} {time.time()}\n")
    command = f"{sys.executable} -c \"import time; time.sleep({build})\""
    settings = Settings(root=project, fixtures_dir=fixtures, schema=(fixtures / "schema.sql",),
                        setup_command=command)
    print(f"\n## schema cache (setup_command takes {build:.1f} s)")
    for label in ("first session (builds, saves)", "second session (cached)"):
        began = time.perf_counter()
        session = DatabaseSession(settings)
        session.start()
        elapsed = time.perf_counter() - began
        session.stop()
        print(f"{label:32} start {elapsed * 1000:8.0f} ms")


def main(argv: list[str]) -> None:
    short = "--short" in argv
    print(f"sqlfix benchmark ({'short' if short else 'full'}); times in ms unless marked")
    with tempfile.TemporaryDirectory(prefix="sqlfix-bench-") as tmp:
        root = Path(tmp)
        bench = Bench(root / "project", short)
        try:
            for size in SIZES:
                bench.per_test(size)
            bench.drift()
            with psycopg.connect(bench.dsn, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS xdist_test"))
                conn.execute(sql.SQL("CREATE DATABASE xdist_test"))
            xdist(root, bench.dsn.replace("sqlfix_test", "xdist_test"), short)
        finally:
            bench.close()
        server_start(root, short)
        schema_cache(root, short)


if __name__ == "__main__":
    main(sys.argv[1:])
