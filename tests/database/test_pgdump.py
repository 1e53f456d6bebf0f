"""A schema written by pg_dump works as `schema` unchanged (tests/data/pgdump/, made by generate.py)."""

from __future__ import annotations

import shutil

import psycopg  # noqa: F401 - imported before any in-process pytester run snapshots sys.modules
from helpers import DATA, NO_RANDOM

PGDUMP = DATA / "pgdump"


def test_the_dump_is_what_pg_dump_writes():
    text = (PGDUMP / "schema.sql").read_text()
    for part in ("\\restrict ", "SET statement_timeout = 0;",
                 "SELECT pg_catalog.set_config('search_path', '', false);",
                 "OWNER TO postgres;", "CREATE DOMAIN public.email", "CREATE TYPE public.order_status AS ENUM",
                 "CREATE FUNCTION public.touch_updated_at()", "CREATE TRIGGER customer_touch",
                 "PARTITION BY RANGE (paid_on)", "\\unrestrict "):
        assert part in text, part


def test_a_pg_dump_schema_applies_unchanged_and_tests_pass_on_it(pytester):
    # On the embedded server, with nothing but the dump: its superuser is `postgres`, so
    # the dump's `OWNER TO postgres` lines load as they are.
    shutil.copy(PGDUMP / "schema.sql", pytester.path / "schema.sql")
    (pytester.path / "fixtures_sql").mkdir()
    (pytester.path / "fixtures_sql" / "customers.sql").write_text(
        "INSERT INTO public.customer (id, email, full_name) VALUES\n"
        "    ({{ id('customer', 'ann') }}, 'ann@example.com', {{ fake.name() }});\n"
        "INSERT INTO public.orders (id, customer_id, status) VALUES\n"
        "    ({{ id('orders', 'o1') }}, {{ id('customer', 'ann') }}, 'paid');\n"
        "INSERT INTO public.payment (id, order_id, paid_on, amount) VALUES\n"
        "    (1, {{ id('orders', 'o1') }}, '2024-02-01', 5);\n")
    pytester.makepyprojecttoml('[tool.sqlfix]\nschema = ["schema.sql"]\n'
                               '[tool.pytest.ini_options]\nasyncio_default_fixture_loop_scope = "function"\n')
    pytester.makepyfile(
        """
        import psycopg
        import pytest
        from sqlfix import uses

        @uses("customers.sql")
        def test_rows_through_domain_enum_partition(sqlfix_conn, sqlfix):
            conn = sqlfix_conn
            assert conn.execute("SELECT status::text FROM public.order_summary").fetchone() == ("paid",)
            assert conn.execute("SELECT count(*) FROM public.payment_2024").fetchone() == (1,)
            # the trigger runs
            conn.execute("UPDATE public.customer SET full_name = 'x' RETURNING updated_at")
            # the app's first own customer gets id 1: id() labels move no sequence
            new = conn.execute("INSERT INTO public.customer (email, full_name) VALUES ('n@x.org', 'N') RETURNING id")
            assert new.fetchone() == (1,)

        def test_the_dumps_settings_are_not_kept(sqlfix_conn):
            # pg_dump's set_config('search_path', '', false) was for the schema only
            conn = sqlfix_conn
            assert conn.execute("SHOW search_path").fetchone() == ('"$user", public',)
            assert conn.execute("SELECT count(*) FROM customer").fetchone() == (0,)
            assert conn.execute("SHOW client_min_messages").fetchone() == ("notice",)

        def test_domain_and_enum_refuse_bad_values(sqlfix_conn):
            with pytest.raises(psycopg.errors.CheckViolation):
                sqlfix_conn.execute("INSERT INTO public.customer (email, full_name) VALUES ('nope', 'N')")
            sqlfix_conn.rollback()
            with pytest.raises(psycopg.errors.InvalidTextRepresentation):
                sqlfix_conn.execute("INSERT INTO public.orders (customer_id, status) VALUES (1, 'lost')")
        """
    )
    pytester.runpytest(*NO_RANDOM).assert_outcomes(passed=3)
