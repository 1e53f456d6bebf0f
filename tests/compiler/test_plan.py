import pytest

from sqlfix.compiler.plan import Requirement, load_order, parse_requires
from sqlfix.errors import FixtureError


def test_requires_header_is_parsed_with_positions():
    text = "-- a comment\n--requires: users.sql,  products.sql\n-- requires: x.sql\nSELECT 1;\n"
    assert parse_requires(text) == (
        Requirement("users.sql", 2, 13),
        Requirement("products.sql", 2, 25),
        Requirement("x.sql", 3, 14),
    )


def test_requires_after_the_first_statement_is_not_read():
    assert parse_requires("SELECT 1;\n-- requires: users.sql\n") == ()


GRAPH = {
    "orders.sql": ("users.sql", "products.sql"),
    "users.sql": (),
    "products.sql": ("users.sql",),
    "a.sql": ("b.sql",),
    "b.sql": ("a.sql",),
    "broken.sql": ("nope.sql",),
}


def order(*names):
    def requires(name):
        return tuple(Requirement(n, 1, 14) for n in GRAPH[name])

    return load_order(names, requires, lambda n: f"fx/{n}", lambda n: n in GRAPH)


def test_requirements_load_first_each_once_in_stable_order():
    assert order("orders.sql", "users.sql") == ["users.sql", "products.sql", "orders.sql"]
    assert order("products.sql", "orders.sql") == ["users.sql", "products.sql", "orders.sql"]


def test_a_cycle_names_the_chain():
    with pytest.raises(FixtureError, match=r"SQLF302 requires forms a cycle: a.sql -> b.sql -> a.sql"):
        order("a.sql")


def test_a_missing_requirement_names_the_chain_and_the_line():
    with pytest.raises(FixtureError) as info:
        order("broken.sql")
    (finding,) = info.value.findings
    assert finding.format().startswith("fx/broken.sql:1:14: SQLF301")
    assert "broken.sql -> nope.sql" in finding.message


def test_requires_below_the_header_is_found_for_the_lint():
    from sqlfix.compiler.plan import misplaced_requires

    text = "-- requires: a.sql\nSELECT 1;\n  -- requires: b.sql\n-- not this\n"
    assert misplaced_requires(text) == ((3, 3),)
    assert misplaced_requires("-- requires: a.sql\n\nSELECT 1;\n") == ()
