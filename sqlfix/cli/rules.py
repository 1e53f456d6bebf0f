"""Every rule sqlfix reports, in one registry: code, kebab-case name, severity, summary.

The statement guard's rules come from `guard.RULES`; the others are raised by the
renderer, the requires planner, the lint's own scans and the loader. The lint's
`--select`/`--ignore`, its JSON `name`/`url` fields and docs/lint.md all read
this table, so a code means the same thing everywhere. Codes are public: never
reuse or renumber one.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from sqlfix import docs_url
from sqlfix.compiler import copy_blocks, guard
from sqlfix.compiler.library import TOO_LARGE
from sqlfix.errors import Severity


@dataclass(frozen=True)
class Rule:
    code: str
    name: str
    severity: Severity
    summary: str
    only_in_check: bool = False  # raised by `check` (the server), never by `lint`

    @property
    def anchor(self) -> str:
        """The anchor of the rule's heading `name (CODE)` in docs/lint.md (MkDocs and GitHub)."""
        return f"{self.name}-{self.code.lower()}"

    @property
    def silenceable(self) -> bool:
        """`noqa` works for warnings and lint-only rules; the loader enforces the errors."""
        return self.severity is Severity.WARNING or self.code in _LINT_ONLY_ERRORS

    @property
    def url(self) -> str:
        """The rule's entry on the docs site (absolute: JSON output is read anywhere)."""
        return docs_url("lint", self.anchor)


_E, _W = Severity.ERROR, Severity.WARNING
# Found by the lint only: in test files (nothing loads them), or by the configured
# server_version (the server itself is the judge at the load)
_LINT_ONLY_ERRORS = frozenset({"SQLF407", "SQLF602"})
_OTHERS = (
    Rule("SQLF001", "unreadable-file", _E, "the file is not valid UTF-8 text"),
    Rule("SQLF201", "template-syntax-error", _E, "Jinja syntax error ({% for %} without end, ...)"),
    Rule("SQLF202", "undefined-name", _E, "the template uses a name its context does not have"),
    Rule(
        "SQLF203",
        "render-error",
        _E,
        "the template raised while rendering (incl. reaching the clock or reseeding rng)",
    ),
    Rule("SQLF204", "quoted-placeholder", _E, "a {{ }} placeholder written inside quotes"),
    Rule("SQLF301", "requires-missing", _E, "`-- requires:` names a fixture that does not exist"),
    Rule("SQLF302", "requires-cycle", _E, "`-- requires:` headers form a cycle"),
    Rule("SQLF303", "id-collision", _E, "two id() labels of one table give the same id"),
    Rule("SQLF304", "requires-not-in-header", _W, "a `-- requires:` line below the header"),
    Rule("SQLF305", "expect-error-not-read", _W,
         "a `-- sqlfix: expect...` header line that is not read (no SQLSTATE, or a second one)"),
    Rule("SQLF407", "needs-newer-server", _E,
         "a statement needs a newer PostgreSQL than the configured server_version"),
    Rule("SQLF601", "unused-fixture", _W, "no test's @uses and no fixture's requires names it"),
    Rule("SQLF602", "uses-missing-fixture", _E, "a test's @uses names a fixture that is missing"),
    Rule(
        "SQLF701",
        "server-rejected-statement",
        _E,
        "the server rejected a statement while loading (syntax, FK, unique, check, not-null)",
        only_in_check=True,
    ),
    Rule(
        "SQLF702",
        "expected-error-missing",
        _E,
        "a fixture marked `-- sqlfix: expect-error SQLSTATE` loaded without that error",
        only_in_check=True,
    ),
)


def _guard_rules() -> tuple[Rule, ...]:
    return (*(
        Rule(code, name, guard.SEVERITY[code], summary)
        for code, (name, summary) in guard.RULES.items()
    ), Rule(copy_blocks.COPY_DATA, copy_blocks.RULE[0], _E, copy_blocks.RULE[1]),
        Rule(TOO_LARGE, "fixture-too-large", _E,
             "the SQL statements of a fixture (outside COPY rows) are above 32 MB"))


RULES: dict[str, Rule] = {
    rule.code: rule for rule in sorted((*_guard_rules(), *_OTHERS), key=lambda r: r.code)
}
_CODE_PREFIX = re.compile(r"SQLF[0-9]{0,3}")


class UnknownCode(ValueError):
    """A --select/--ignore entry matches no rule code."""


def expand(selectors: Iterable[str], where: str) -> frozenset[str]:
    """Rule codes matched by codes or code prefixes (`SQLF101`, `SQLF1`); raises UnknownCode."""
    codes: set[str] = set()
    for raw in selectors:
        selector = raw.strip().upper()
        matched = {c for c in RULES if c.startswith(selector)} if selector else set()
        if not _CODE_PREFIX.fullmatch(selector) or not matched:
            raise UnknownCode(
                f"{where}: unknown rule code {raw!r}; known codes are {', '.join(RULES)} "
                "(a prefix such as SQLF1 selects a group)"
            )
        codes |= matched
    return frozenset(codes)
