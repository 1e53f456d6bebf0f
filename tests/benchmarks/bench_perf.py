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

import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

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
        self.root = root
        self.fixtures = fixtures = make_project(root)
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

    def sqlfix_test(self, names: tuple[str, ...], session: DatabaseSession | None = None) -> None:
        """One test as the plugin runs it: plan, begin, load + protect, body, checks, end."""
        session = session or self.session
        boundary = session.begin()  # as the plugin: a VACUUM when one is due
        handle = Sqlfix(session, boundary)
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

    def drift(self) -> None:
        """Per-test time and memory over many tests, three runs a variant (one if short)."""
        tests, runs = (600, 1) if self.short else (5000, 3)
        # each sqlfix variant on a session (and database) of its own, started fresh as a
        # run starts: the backend's cached plans are part of what drifts
        sessions = {}
        for name, settings in (("drift_default_test", {}), ("drift_off_test", {"vacuum_threshold": 0}),
                               ("drift_layers_test", {"layers": True})):
            self.admin.execute(f"CREATE DATABASE {name} TEMPLATE bench_template".encode())
            sessions[name] = self.layered[name] = DatabaseSession(Settings(
                root=self.root, fixtures_dir=self.fixtures,
                dsn=self.dsn.replace("sqlfix_test", name), **settings))  # type: ignore[arg-type]
            sessions[name].start()
        layered = sessions["drift_layers_test"]
        plans = [("rows_200.sql",), ("rows_200.sql", "orders.sql")]

        def plain(session: DatabaseSession) -> Callable[[int, tuple[str, ...]], None]:
            return lambda i, names: self.sqlfix_test(names, session)

        threshold = sessions["drift_default_test"].vacuum.threshold
        # label -> (one test, its session's backend, runs): the contrasts drift for
        # minutes, so they run once
        variants: dict[str, tuple[Callable[[int, tuple[str, ...]], None], Any, int]] = {
            f"sqlfix (vacuum_threshold = {threshold}, the default)": (
                plain(sessions["drift_default_test"]), sessions["drift_default_test"], runs),
            "sqlfix + layers (500 a transaction), same set in blocks of 50": (
                lambda i, names: self.layered_test(
                    layered, plans[i // 50 % 2], plans[(i + 1) // 50 % 2]),
                layered, runs),
            "sqlfix, vacuum_threshold = 0 (no VACUUM between tests)": (
                plain(sessions["drift_off_test"]), sessions["drift_off_test"], 1),
            "plain floor on one long-lived connection": (
                lambda i, names: self.plain_test(names), self.plain, 1),
        }
        print(f"\n## drift over {tests} tests (200 rows), {runs} run(s) a variant, "
              "1 for the last two")
        print(f"{'variant':62} {'run':>3} {'100-350':>8} {'last 250':>8} {'ratio':>6} "
              f"{'client RSS MB':>15} {'server RSS MB':>15} {'dead rows':>10}")
        for run in range(runs):
            for label, (one, owner, times_run) in variants.items():
                if run >= times_run:
                    continue
                self.vacuum()
                backend = (owner.info.backend_pid if isinstance(owner, psycopg.Connection)
                           else self._backend_pid(owner))
                rss = [(_rss_mb(os.getpid()), _rss_mb(backend))]
                times = []
                for i in range(tests):
                    began = time.perf_counter()
                    one(i, plans[i % 2])
                    times.append(time.perf_counter() - began)
                    if i == 349:
                        rss.append((_rss_mb(os.getpid()), _rss_mb(backend)))
                rss.append((_rss_mb(os.getpid()), _rss_mb(backend)))
                early = statistics.median(times[100:350]) * 1000
                late = statistics.median(times[-250:]) * 1000
                dead = self._dead_rows(owner)
                print(f"{label:62} {run + 1:3} {early:8.3f} {late:8.3f} {late / early:6.2f} "
                      f"{rss[1][0]:7.1f}->{rss[2][0]:6.1f} {rss[1][1]:7.1f}->{rss[2][1]:6.1f} "
                      f"{dead:10}")
        vacuum = sessions["drift_default_test"].vacuum
        print(f"VACUUMs of the default: {vacuum.runs}, {vacuum.seconds * 1000:.0f} ms in all, "
              f"{vacuum.seconds * 1000 / max(vacuum.runs, 1):.2f} ms each")
        print("(ms medians of tests 100-350 and of the last 250; RSS at test 350 -> at the end; "
              "dead rows in the 4 tables at the end, from pg_stat_user_tables: each backend "
              "reports them at most once a second)")

    def _backend_pid(self, session: DatabaseSession) -> int:
        boundary = session.boundary()
        pid = boundary.conn.execute(b"SELECT pg_backend_pid()").fetchone()
        boundary.conn.rollback()
        assert pid is not None
        return int(pid[0])

    def _dead_rows(self, owner: Any) -> int:
        dsn = owner.dsn if isinstance(owner, DatabaseSession) else self.dsn
        with psycopg.connect(dsn, autocommit=True) as conn:
            row = conn.execute(
                b"SELECT coalesce(sum(n_dead_tup), 0) FROM pg_stat_user_tables "
                b"WHERE relname IN ('users', 'products', 'orders', 'order_items')").fetchone()
        return int(row[0]) if row else 0

    def close(self) -> None:
        self.plain.close()
        for session in self.layered.values():
            session.stop()
        self.admin.close()
        self.session.stop()


def _rss_mb(pid: int) -> float:
    """Resident memory of process `pid` in MB (Linux /proc; 0 where unreadable)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _installed(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


XDIST_TEST = """
import pytest
from sqlfix import uses

@uses("rows_200.sql")
@pytest.mark.parametrize("n", range({n}))
def test_n(sqlfix_conn, n):
    sqlfix_conn.execute("UPDATE users SET full_name = 'x' WHERE id %% 2 = 0")
"""
# pytest-xdist's own cost, the ceiling for any plugin: the same number of empty tests
XDIST_EMPTY = """
import pytest

@pytest.mark.parametrize("n", range({n}))
def test_n(n):
    pass
"""


def run_pytest(project: Path, *args: str, env: dict[str, str] | None = None) -> float:
    began = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:randomly",
                           "-p", "no:cacheprovider", *args], cwd=project, check=False,
                          capture_output=True, text=True, env=env)
    if done.returncode != 0:
        sys.exit(f"pytest {' '.join(args)} failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    return time.perf_counter() - began


def xdist(root: Path, dsn: str, short: bool) -> None:
    tests = 40 if short else 1000
    project = root / "xdist"
    project.mkdir()
    fixtures = make_project(project)
    (project / "pyproject.toml").write_text(
        f'[tool.sqlfix]\nschema = ["{fixtures.name}/schema.sql"]\n')
    (project / "test_many.py").write_text(XDIST_TEST.replace("{n}", str(tests)).replace("%%", "%"))
    (project / "empty").mkdir()
    (project / "empty" / "test_empty.py").write_text(XDIST_EMPTY.replace("{n}", str(tests)))
    # Each worker is a new Python: with PYTHONDONTWRITEBYTECODE (set on some CI machines)
    # every one compiles pytest, its plugins and sqlfix from source, ~1 s of the start.
    # Users' machines keep bytecode: these runs do, after a warm-up run writes it.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    run_pytest(project, "-n", "2", "-p", "no:sqlfix", "empty", env=env)
    run_pytest(project, "-n", "2", "test_many.py::test_n[0]", env=env)
    print(f"\n## pytest-xdist, {tests} tests, wall time of the whole run "
          "(200 rows a test; bytecode kept)")
    contenders = (("empty tests, no sqlfix (xdist's own ceiling)", ["-p", "no:sqlfix", "empty"]),
                  ("sqlfix, embedded", ["test_many.py"]),
                  ("sqlfix, DSN", ["test_many.py", f"--sqlfix-dsn={dsn}"]))
    for label, args in contenders:
        serial = run_pytest(project, "-n", "0", *args, env=env)
        parallel = run_pytest(project, "-n", "2", *args, env=env)
        print(f"{label:45} -n 0 {serial:7.2f} s  -n 2 {parallel:7.2f} s  "
              f"throughput x{serial / parallel:.2f}")


IN_PYTEST = {
    "plain floor (a session psycopg connection, ROLLBACK)": """
import pytest, psycopg
from pathlib import Path

SQL = Path({sql!r}).read_bytes()

@pytest.fixture(scope="session")
def plain():
    with psycopg.connect({dsn!r}) as conn:
        yield conn

@pytest.mark.parametrize("n", range({n}))
def test_n(plain, n):
    plain.execute(SQL)
    plain.execute({body!r})
    plain.rollback()
""",
    "sqlfix @uses": """
import pytest
from sqlfix import uses

@uses("rows_200.sql")
@pytest.mark.parametrize("n", range({n}))
def test_n(sqlfix_conn, n):
    sqlfix_conn.execute({body!r})
""",
    "pytest-postgresql `postgresql` fixture (noproc, schema loaded)": """
import pytest
from pathlib import Path
from pytest_postgresql import factories

SQL = Path({sql!r}).read_bytes()
pg_noproc = factories.postgresql_noproc(
    host={host!r}, port={port}, user={user!r}, dbname="ppg", load=[Path({schema!r})])
postgresql = factories.postgresql("pg_noproc")

@pytest.mark.parametrize("n", range({n}))
def test_n(postgresql, n):
    postgresql.execute(SQL)
    postgresql.execute({body!r})
""",
}


def in_pytest(root: Path, bench: Bench, short: bool) -> None:
    """Whole pytest runs per contender: per test = (wall(many) - wall(few)) / (many - few),
    which leaves out pytest's and each contender's start-up."""
    few, many, rounds = (5, 25, 1) if short else (20, 220, 3)
    project = root / "in-pytest"
    project.mkdir()
    shutil.copytree(bench.fixtures, project / "fixtures_sql")
    (project / "pyproject.toml").write_text('[tool.sqlfix]\nschema = ["fixtures_sql/schema.sql"]\n')
    sql_file = project / "rows_200.rendered.sql"
    sql_file.write_bytes(bench._sql(("rows_200.sql",)))
    info = psycopg.conninfo.conninfo_to_dict(bench.dsn)
    values = {"sql": str(sql_file), "body": BODY, "host": info["host"], "port": info["port"],
              "user": info["user"], "schema": str(project / "fixtures_sql" / "schema.sql")}
    runs: dict[str, list[str]] = {}
    for i, name in enumerate(IN_PYTEST):
        database = f"in_pytest_{i}_test"
        # sqlfix applies the schema itself (to an empty database); the floor needs it there
        template = "" if "sqlfix" in name else " TEMPLATE bench_template"
        bench.admin.execute(f"CREATE DATABASE {database}{template}".encode())
        runs[name] = [f"--sqlfix-dsn={bench.dsn.replace('sqlfix_test', database)}"]
        values["dsn"] = bench.dsn.replace("sqlfix_test", database)
        for n in (few, many):
            (project / f"test_{i}_{n}.py").write_text(IN_PYTEST[name].format(n=n, **values))
    runs["sqlfix @uses + --sqlfix-layers"] = [*runs["sqlfix @uses"], "--sqlfix-layers"]
    files = {name: list(IN_PYTEST).index(name.split(" + ")[0]) for name in runs}
    if not _installed("pytest_postgresql"):
        del runs["pytest-postgresql `postgresql` fixture (noproc, schema loaded)"]
    per_test: dict[str, list[float]] = {name: [] for name in runs}
    for name in runs:  # warm-up: sqlfix builds and saves the schema, pytest-postgresql its template
        run_pytest(project, f"test_{files[name]}_{few}.py", "-p", "no:xdist", *runs[name])
    for _ in range(rounds):
        order = list(runs)
        random.shuffle(order)
        for name in order:
            walls = [run_pytest(project, f"test_{files[name]}_{n}.py", "-p", "no:xdist",
                                *runs[name]) for n in (few, many)]
            per_test[name].append((walls[1] - walls[0]) / (many - few) * 1000)
    base = statistics.median(per_test["sqlfix @uses"])
    print(f"\n## in pytest, 200 rows: per test from runs of {few} and {many} tests, "
          f"medians of {rounds} round(s)")
    print(f"{'contender':62} {'ms':>8} {'x sqlfix':>8}")
    for name, values_ms in per_test.items():
        med = statistics.median(values_ms)
        print(f"{name:62} {med:8.3f} {med / base:8.2f}")
    if not _installed("pytest_postgresql"):
        print(f"{'pytest-postgresql `postgresql` fixture':62} not installed")


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
            in_pytest(root, bench, short)
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
