"""The pytest front end: the plugin's hooks and fixtures, the `sqlfix` handle, SQLAlchemy.

Kept light: importing the plugin loads neither psycopg nor the database side; they load
with the first sqlfix test.
"""
