"""COPY ... FROM stdin blocks (pg_dump's data format) load as fixtures, errors at the row's line."""

from __future__ import annotations

import psycopg  # imported before any in-process pytester run snapshots sys.modules
from helpers import NO_RANDOM

USERS_COPY = (
    "-- users as pg_dump writes them\n"
    "COPY public.users (id, email, full_name, created_at, is_admin) FROM stdin;\n"
    "1\tann@example.com\tAnn O'Brien\t2024-01-01 10:00:00+00\tf\n"
    "2\tbob@example.com\tBob \\\\ {{ not a template }}\t2024-01-02 10:00:00+00\tt\n"
    "\\.\n"
)
ORDERS_COPY = (
    "-- requires: users.sql\n"
    "INSERT INTO products (id, sku, name, price_cents) VALUES ({{ id('products', 'mug') }}, 'MUG', 'Mug', 900);\n"
    "COPY public.orders (id, user_id, status, placed_at, note) FROM stdin;\n"
    "10\t1\tpaid\t2024-01-03 10:00:00+00\t\\N\n"
    "11\t2\tcart\t2024-01-04 10:00:00+00\tline\\nbreak\n"
    "\\.\n"
    "UPDATE orders SET note = 'first' WHERE id = 10;\n"
)


def test_copy_blocks_load_with_sql_around_them(shop):
    fixtures = shop.path / "fixtures_sql"
    (fixtures / "users.sql").write_text(USERS_COPY.replace("{{ not a template }}", "{% raw %}{{ not a template }}{% endraw %}"))
    (fixtures / "copy_orders.sql").write_text(ORDERS_COPY)
    shop.makepyfile(
        """
        from sqlfix import uses

        @uses("copy_orders.sql")
        def test_rows(sqlfix_conn):
            rows = sqlfix_conn.execute("SELECT id, user_id, status, note FROM orders ORDER BY id").fetchall()
            assert rows == [(10, 1, "paid", "first"), (11, 2, "cart", "line\\nbreak")]
            names = sqlfix_conn.execute("SELECT full_name FROM users ORDER BY id").fetchall()
            assert names == [("Ann O'Brien",), ("Bob \\\\ {{ not a template }}",)]
            assert sqlfix_conn.execute("SELECT count(*) FROM products").fetchone() == (1,)

        def test_rolled_back(sqlfix_conn):
            assert sqlfix_conn.execute("SELECT count(*) FROM orders").fetchone() == (0,)
        """
    )
    shop.runpytest(*NO_RANDOM).assert_outcomes(passed=2)


def test_a_fixture_of_copy_rows_alone_loads_them(shop):
    # no statement outside the block: the load must still run the COPY
    (shop.path / "fixtures_sql" / "users.sql").write_text(USERS_COPY.replace("{{ not a template }}", "plain"))
    shop.makepyfile(
        """
        from sqlfix import uses

        @uses("users.sql")
        def test_rows(sqlfix_conn):
            assert sqlfix_conn.execute("SELECT id FROM users ORDER BY id").fetchall() == [(1,), (2,)]
        """
    )
    shop.runpytest(*NO_RANDOM).assert_outcomes(passed=1)


def test_a_failing_statement_between_copy_blocks_is_named_by_its_line(shop):
    fixtures = shop.path / "fixtures_sql"
    (fixtures / "users.sql").write_text(USERS_COPY.replace("{{ not a template }}", "plain"))
    (fixtures / "bad.sql").write_text(
        "-- requires: users.sql\n"
        "UPDATE users SET is_admin = true WHERE id = 1;\n"
        "INSERT INTO orders (id, user_id, status) VALUES (20, 99, 'paid');\n"
        "UPDATE users SET is_admin = false WHERE id = 2;\n"
    )
    shop.makepyfile(
        """
        from sqlfix import uses

        @uses("bad.sql")
        def test_bad(sqlfix_conn):
            pass

        def test_clean(sqlfix_conn):
            assert sqlfix_conn.execute("SELECT count(*) FROM users").fetchone() == (0,)
        """
    )
    result = shop.runpytest(*NO_RANDOM)
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*bad.sql:3:1: SQLF701 server rejected the statement*"])


def test_a_bad_row_is_named_by_its_line_and_nothing_is_kept(shop):
    fixtures = shop.path / "fixtures_sql"
    (fixtures / "users.sql").write_text(USERS_COPY.replace("{{ not a template }}", "x"))
    (fixtures / "bad_orders.sql").write_text(ORDERS_COPY.replace("11\t2\tcart", "11\t7\tcart"))
    (fixtures / "bad_type.sql").write_text(ORDERS_COPY.replace("11\t2\tcart\t2024-01-04", "11\t2\tcart\tyesterday-ish"))
    shop.makepyfile(
        """
        from sqlfix import uses

        @uses("bad_orders.sql")
        def test_fk(sqlfix_conn):
            pass

        @uses("bad_type.sql")
        def test_type(sqlfix_conn):
            pass

        def test_clean(sqlfix_conn):
            assert sqlfix_conn.execute("SELECT count(*) FROM users").fetchone() == (0,)
        """
    )
    result = shop.runpytest(*NO_RANDOM)
    result.assert_outcomes(passed=1, errors=2)
    result.stdout.fnmatch_lines([
        "*fixtures_sql/bad_orders.sql:5:1: SQLF701 server rejected the statement: 23503 insert or update on table \"orders\" violates foreign key*Key (user_id)=(7)*",
    ])
    result.stdout.fnmatch_lines(["*fixtures_sql/bad_type.sql:5:1: SQLF701 *22007 invalid input syntax for type timestamp with time zone*"])


def test_check_loads_a_copy_fixture_and_reports_rows(shop, fresh_dsn):
    fixtures = shop.path / "fixtures_sql"
    (fixtures / "users.sql").write_text(USERS_COPY.replace("{{ not a template }}", "x"))
    (fixtures / "copy_orders.sql").write_text(ORDERS_COPY)
    result = shop.run(
        __import__("sys").executable, "-m", "sqlfix", "check", "--dsn", fresh_dsn,
        "fixtures_sql/copy_orders.sql")
    assert result.ret == 0, result.stdout.str()
    result.stdout.fnmatch_lines(["OK    copy_orders.sql *orders +2, products +1, users +2"])
    with psycopg.connect(fresh_dsn) as conn:
        assert conn.execute("SELECT count(*) FROM users").fetchone() == (0,)


def test_a_copy_statement_the_server_refuses_is_named_by_its_own_line(shop, fresh_dsn):
    # a missing column or table is the COPY line's fault, not the first row's
    fixtures = shop.path / "fixtures_sql"
    (fixtures / "users.sql").write_text(USERS_COPY.replace("{{ not a template }}", "x"))
    (fixtures / "no_column.sql").write_text(ORDERS_COPY.replace(", note)", ", nots)"))
    (fixtures / "no_table.sql").write_text(ORDERS_COPY.replace("public.orders", "public.ordrs"))
    result = shop.run(
        __import__("sys").executable, "-m", "sqlfix", "check", "--dsn", fresh_dsn,
        "fixtures_sql/no_column.sql", "fixtures_sql/no_table.sql")
    assert result.ret == 1, result.stdout.str()
    result.stdout.fnmatch_lines([
        "*fixtures_sql/no_column.sql:3:1: SQLF701 server rejected the statement: 42703 *nots*",
        "*fixtures_sql/no_table.sql:3:1: SQLF701 server rejected the statement: 42P01 *ordrs*",
    ], consecutive=False)
