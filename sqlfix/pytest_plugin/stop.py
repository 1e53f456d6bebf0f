"""Stopping the run when later tests cannot start from the baseline, also under pytest-xdist.

`pytest.exit()` on an xdist worker ends the worker with tests still scheduled on it, and
the controller fails on that with an INTERNALERROR that does not show the reason. On a
worker sqlfix instead fails the current test with the reason and asks the worker to stop
after it (`session.shouldstop`): the controller then stops every worker and prints the
reason ("Interrupted: ..."), and `Controller` gives the run sqlfix's exit code.
"""

from __future__ import annotations

from typing import Any, NoReturn

import pytest

_OUTPUT = "sqlfix_stop"  # key of a worker's workeroutput: [exit code, message]
DEATH_OUTPUT = "sqlfix_death"  # the lines on a death of its server no test reported


def stop_run(config: pytest.Config, session: pytest.Session | None, message: str,
             returncode: int | pytest.ExitCode = 3) -> NoReturn:
    """Stop the run with `message` and `returncode` (3: the baseline is lost).

    Raises pytest's Exit; on a pytest-xdist worker, pytest's Failed for the current test
    after asking the worker to stop (see the module's docstring).
    """
    output = getattr(config, "workeroutput", None)
    if output is None or session is None:
        pytest.exit(message, returncode=returncode)
    output[_OUTPUT] = [int(returncode), message]
    session.shouldstop = message.splitlines()[0]
    pytest.fail(message, pytrace=False)


class Controller:
    """On the pytest-xdist controller: a worker that stopped the run gives its exit code."""

    def __init__(self) -> None:
        self.returncode: int | None = None
        self.deaths: list[tuple[str, list[str]]] = []  # (worker, what its server's death was)

    def pytest_testnodedown(self, node: Any, error: object) -> None:
        output = getattr(node, "workeroutput", {})
        stopped = output.get(_OUTPUT)
        if stopped and self.returncode is None:
            self.returncode = int(stopped[0])
        if output.get(DEATH_OUTPUT):
            self.deaths.append((getattr(getattr(node, "gateway", None), "id", "?"),
                                output[DEATH_OUTPUT]))

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        """A worker's server died after its last sqlfix test: said here, once per worker."""
        if self.deaths:
            terminalreporter.section("sqlfix", yellow=True)
        for worker, lines in sorted(self.deaths):
            terminalreporter.write_line(f"[{worker}] " + "\n".join(lines))

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.returncode is not None:
            session.exitstatus = self.returncode
