"""What a test gets: the `sqlfix` handle and its connection."""

from __future__ import annotations

from sqlfix.compiler.library import CompiledFixture, LoadPlan, check_id_collisions
from sqlfix.compiler.seeds import fixture_id
from sqlfix.database.boundary import SAVEPOINT, Boundary, SqlfixConnection
from sqlfix.database.loader import load
from sqlfix.database.session import DatabaseSession

__all__ = ["Sqlfix"]


class Sqlfix:
    """The test's handle: `conn`, `seed`, `load()`, `id()`, `render()`.

    Everything it does happens inside the test's rollback boundary.
    """

    def __init__(self, session: DatabaseSession, boundary: Boundary) -> None:
        self._session = session
        self._boundary = boundary
        self._loaded: list[CompiledFixture] = []

    @property
    def conn(self) -> SqlfixConnection:
        """The test's connection (the session's, inside this test's transaction)."""
        return self._boundary.conn

    @property
    def seed(self) -> int:
        """The run's seed: replay a run with `--sqlfix-seed=<this>`."""
        return self._session.settings.seed

    @property
    def escaped(self) -> bool:
        """True once sqlfix found that this test's changes escaped its boundary."""
        return self._boundary.escape is not None

    @property
    def loaded(self) -> tuple[str, ...]:
        """Fixture files loaded in this test, in load order."""
        return tuple(f.name for f in self._loaded)

    def load(self, *names: str) -> tuple[str, ...]:
        """Load more fixtures (and their requirements) now; files already loaded are skipped.

        Returns the names that were loaded by this call.
        """
        __tracebackhide__ = True
        library = self._session.library
        plan = library.plan(names)
        new = tuple(f for f in plan if f.name not in self.loaded)
        check_id_collisions((*self._loaded, *new))
        boundary = self._boundary
        taken = boundary.take_load_savepoint()
        # The savepoint that marks "loaded" rides along with the load (one round trip):
        # at the test's start, and after a load() in the test body.
        protect = taken or self.conn._sqlfix_savepoint is not None
        then = f"SAVEPOINT {SAVEPOINT}" if protect else ""
        if load(self.conn, LoadPlan(new), savepoint_taken=taken, then=then) and protect:
            boundary.protected()
        self._loaded.extend(new)
        return tuple(f.name for f in new)

    def id(self, table: str, label: str) -> int:
        """The id the templates give `label` in `table` (`{{ id('users', 'alice') }}`)."""
        return fixture_id(table, label)

    def render(self, name: str) -> str:
        """The rendered SQL of one fixture, as the test loads it."""
        return self._session.library.compile(name).rendered.sql
