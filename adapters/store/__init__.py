"""ctid's SQL storage base: engines, the database thread pool, the schema and its migrations.

SQLAlchemy 2 Core only.  One code path serves SQLite (the embedded default,
a file with WAL) and MySQL/MariaDB through PyMySQL (production).  Every
query runs on :class:`~ctid.adapters.store.pool.DatabasePool`'s own bounded
thread pool, never on the reactor thread; see ``docs/database.md``.
"""
