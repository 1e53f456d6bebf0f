"""The plugin as users meet it: real test files run by pytest against the embedded PostgreSQL."""

from __future__ import annotations

import pytest
from helpers import NO_RANDOM, REPO

# Inner runs start their own embedded server; randomly would reorder their tests,
# which the order tests below control explicitly.


def test_rows_are_visible_in_the_test_and_gone_in_the_next(shop):
    shop.makepyfile(
        """
        from sqlfix import uses

        @uses("users.sql")
        def test_a(sqlfix_conn):
            assert sqlfix_conn.execute("SELECT count(*) FROM users").fetchone() == (4,)
            sqlfix_conn.execute("INSERT INTO products (sku, name, price_cents) VALUES ('x', 'y', 1)")

        def test_b(sqlfix_conn):
            assert sqlfix_conn.execute("SELECT count(*) FROM users").fetchone() == (0,)
            assert sqlfix_conn.execute("SELECT count(*) FROM products").fetchone() == (0,)
        """
    )
    shop.runpytest(*NO_RANDOM).assert_outcomes(passed=2)


def test_class_and_module_markers_stack_and_load_each_file_once(shop):
    shop.makepyfile(
        """
        from sqlfix import uses

        pytestmark = uses("users.sql")

        @uses("orders.sql")
        class TestOrders:
            def test_class(self, sqlfix):
                assert sqlfix.loaded == ("users.sql", "products.sql", "orders.sql")

            @uses("users.sql", "inventory_audit.sql")
            def test_method(self, sqlfix_conn, sqlfix):
                assert sqlfix.loaded == (
                    "users.sql", "products.sql", "orders.sql", "inventory_audit.sql")
                assert sqlfix_conn.execute("SELECT count(*) FROM users").fetchone() == (4,)

        def test_module_only(sqlfix):
            assert sqlfix.loaded == ("users.sql",)

        def test_after(sqlfix_conn):
            assert sqlfix_conn.execute("SELECT count(*) FROM orders").fetchone() == (0,)
        """
    )
    shop.runpytest(*NO_RANDOM).assert_outcomes(passed=4)


def test_a_marked_test_loads_without_requesting_a_fixture(shop):
    shop.makepyfile(
        """
        import pytest
        from sqlfix import uses

        @uses("users.sql")
        def test_marked_only():
            pass

        def test_sees_the_rollback(sqlfix_conn):
            assert sqlfix_conn.execute("SELECT count(*) FROM users").fetchone() == (0,)

        @uses("nope.sql")
        def test_missing_fixture_errors():
            pass
        """
    )
    result = shop.runpytest(*NO_RANDOM)
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(["*fixture 'nope.sql' not found in*"])


def test_a_failing_test_still_rolls_back(shop):
    shop.makepyfile(
        """
        from sqlfix import uses

        @uses("users.sql")
        def test_fails(sqlfix_conn):
            sqlfix_conn.execute("DELETE FROM users")
            sqlfix_conn.execute("INSERT INTO products (sku, name, price_cents) VALUES ('x', 'y', 1)")
            assert False, "boom"

        def test_clean(sqlfix_conn):
            assert sqlfix_conn.execute("SELECT count(*) FROM products").fetchone() == (0,)
        """
    )
    result = shop.runpytest(*NO_RANDOM)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*sqlfix*", "seed=0; replay with:",
                                 "  pytest *::test_fails --sqlfix-seed=0"])


def test_a_ddl_fixture_is_rejected_with_file_and_line(shop):
    (shop.path / "fixtures_sql" / "bad.sql").write_text(
        "-- sneaky\nINSERT INTO users (email, full_name, created_at) VALUES ('a@b', 'A', now());\n"
        "  CREATE TABLE oops (id int);\n"
    )
    shop.makepyfile(
        """
        from sqlfix import uses

        @uses("bad.sql")
        def test_bad():
            pass

        def test_no_table(sqlfix_conn):
            assert sqlfix_conn.execute("SELECT to_regclass('oops')").fetchone() == (None,)
        """
    )
    result = shop.runpytest(*NO_RANDOM)
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*fixtures_sql/bad.sql:3:3: SQLF101 *schema*"])


def test_a_failing_fixture_statement_names_file_line_and_sqlstate(shop):
    (shop.path / "fixtures_sql" / "dup.sql").write_text(
        "-- requires: users.sql\n"
        "INSERT INTO products (sku, name, price_cents) VALUES ('A', 'a', 5);\n"
        "\n"
        "INSERT INTO users (email, full_name, created_at)\n"
        "VALUES ('alice@example.com', 'Again', {{ now }});\n"
    )
    shop.makepyfile(
        """
        from sqlfix import uses

        @uses("dup.sql")
        def test_dup():
            pass

        def test_clean(sqlfix_conn):
            assert sqlfix_conn.execute("SELECT count(*) FROM products").fetchone() == (0,)
        """
    )
    result = shop.runpytest(*NO_RANDOM)
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines([
        "*fixtures_sql/dup.sql:4:1: SQLF701 server rejected the statement: 23505 duplicate key*"
        "DETAIL: Key (email)=(alice@example.com) already exists; nothing from this load was kept",
        "*--- statement ---*",
        "*INSERT INTO users (email, full_name, created_at)*",
    ])


def _render_in_a_run(shop, *args):
    shop.makepyfile(
        """
        def test_render(sqlfix):
            print("RENDERED<" + sqlfix.render("users.sql") + sqlfix.render("products.sql") + ">")
        """
    )
    result = shop.runpytest_subprocess("-s", *NO_RANDOM, *args)
    result.assert_outcomes(passed=1)
    text = result.stdout.str()
    return text[text.index("RENDERED<"):text.index(">", text.index("RENDERED<"))]


def test_same_seed_renders_identical_bytes_other_seed_other_values(shop):
    first = _render_in_a_run(shop, "--sqlfix-seed=7")
    again = _render_in_a_run(shop, "--sqlfix-seed=7")
    other = _render_in_a_run(shop, "--sqlfix-seed=8")
    assert first == again
    assert first != other


def test_the_seed_is_in_the_header_and_random_seeds_can_be_replayed(shop):
    shop.makepyfile("def test_nothing(): pass")
    result = shop.runpytest("--sqlfix-seed=random", *NO_RANDOM)
    result.stdout.fnmatch_lines(["sqlfix: seed=* (random, from option --sqlfix-seed); replay with --sqlfix-seed=*"])


def test_a_bad_seed_is_a_usage_error(shop):
    shop.makepyfile("def test_nothing(): pass")
    result = shop.runpytest("--sqlfix-seed=abc")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*seed must be a non-negative integer or 'random', not 'abc'*"])


def test_a_raw_commit_fails_the_test_and_says_why(shop):
    shop.makepyfile(
        """
        def test_escapes(sqlfix_conn):
            sqlfix_conn.execute("INSERT INTO products (sku, name, price_cents) VALUES ('x', 'y', 1)")
            sqlfix_conn.execute("COMMIT")
        """
    )
    result = shop.runpytest(*NO_RANDOM)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*rollback boundary did not hold*was COMMITTED*"])


@pytest.mark.parametrize("order", [("-p", "no:randomly"), ("-p", "randomly", "-p", "no:cacheprovider")])
def test_the_example_suite_passes_in_any_order(shop, order):
    shop.makepyfile(test_shop=(REPO / "tests" / "examples" / "test_shop.py").read_text())
    result = shop.runpytest_subprocess(*order)
    result.assert_outcomes(passed=7)


def test_a_statement_the_parser_rejects_is_mapped_to_its_line(shop):
    (shop.path / "fixtures_sql" / "grammar.sql").write_text(
        "-- requires: users.sql\nINSERT INTO products (sku, name, price_cents) VALUES ('A', 'a', 5);\n"
        "INSERT INTO 'users' (email) VALUES ('x@y');\n"
    )
    shop.makepyfile(
        """
        from sqlfix import uses

        @uses("grammar.sql")
        def test_grammar():
            pass

        def test_clean(sqlfix_conn):
            assert sqlfix_conn.execute("SELECT count(*) FROM products").fetchone() == (0,)
        """
    )
    result = shop.runpytest(*NO_RANDOM)
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*fixtures_sql/grammar.sql:3:13: SQLF404 syntax error at or near*"])
    assert "InvalidSavepointSpecification" not in result.stdout.str()


def test_xdist_workers_share_the_controllers_seed(shop):
    shop.makepyfile(
        """
        import os
        import pytest

        @pytest.mark.parametrize("n", range(6))
        def test_seed(sqlfix, n):
            with open(f"seed-{os.getpid()}.txt", "w") as out:
                out.write(str(sqlfix.seed))
        """
    )
    result = shop.runpytest_subprocess("-n", "2", "--sqlfix-seed=random", "-p", "no:randomly")
    result.assert_outcomes(passed=6)
    header = next(line for line in result.outlines if line.startswith("sqlfix: seed="))
    seed = header.split("seed=")[1].split()[0]
    seen = {p.read_text() for p in shop.path.glob("seed-*.txt")}
    assert len(list(shop.path.glob("seed-*.txt"))) == 2  # both workers ran tests
    assert seen == {seed}

