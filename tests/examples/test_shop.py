"""The example suite: the shop in fixtures_sql/, tested the way a sqlfix user would.

Run it alone with `python -m pytest tests/examples` (sqlfix starts its own PostgreSQL).
"""

from sqlfix import uses


@uses("orders.sql")
def test_an_order_sees_its_user_and_products(sqlfix_conn, sqlfix):
    row = sqlfix_conn.execute(
        "SELECT u.email, count(i.*), sum(i.quantity * i.price_cents) > 0"
        " FROM orders o JOIN users u ON u.id = o.user_id"
        " JOIN order_items i ON i.order_id = o.id"
        " WHERE o.id = %s GROUP BY u.email",
        [sqlfix.id("orders", "alice-paid")],
    ).fetchone()
    assert row == ("alice@example.com", 2, True)


def test_each_test_starts_from_an_empty_shop(sqlfix_conn):
    for table in ("users", "products", "orders", "order_items"):
        assert sqlfix_conn.execute(f"SELECT count(*) FROM {table}").fetchone() == (0,)


@uses("users.sql")
class TestUsers:
    def test_admin_is_flagged(self, sqlfix_conn):
        admins = sqlfix_conn.execute("SELECT email FROM users WHERE is_admin").fetchall()
        assert admins == [("admin@example.com",)]

    @uses("products.sql")
    def test_class_and_method_markers_stack(self, sqlfix):
        assert sqlfix.loaded == ("users.sql", "products.sql")

    def test_service_code_that_commits_is_still_rolled_back(self, sqlfix_conn):
        sqlfix_conn.execute("DELETE FROM users WHERE email = 'bob@example.com'")
        sqlfix_conn.commit()  # lands on a savepoint; the test's end undoes it
        assert sqlfix_conn.execute("SELECT count(*) FROM users").fetchone() == (3,)


@uses("inventory_audit.sql")
def test_out_of_stock_products(sqlfix_conn):
    skus = sqlfix_conn.execute("SELECT sku FROM products WHERE stock = 0").fetchall()
    assert ("SKU-TEAPOT",) in skus


@uses("users.sql")
def test_loading_more_fixtures_mid_test(sqlfix):
    assert sqlfix.load("orders.sql") == ("products.sql", "orders.sql")
    count = sqlfix.conn.execute("SELECT count(*) FROM orders").fetchone()
    assert count == (2,)
