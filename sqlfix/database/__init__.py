"""The database side, all I/O: the server, the test database and its schema, the rollback
boundary, the baseline and the loader.

Imports the compiler and the top-level modules, never a front end
(tests/test_architecture.py holds that).
"""
