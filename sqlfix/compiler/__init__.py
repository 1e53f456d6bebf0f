"""The fixture compiler, pure: find, plan, render and guard fixture files.

No database and no pytest: nothing here imports `sqlfix.database`, `sqlfix.pytest_plugin`
or `sqlfix.cli` (tests/test_architecture.py holds that).
"""
