"""The database: engine and sessions, the tables, dialect-specific SQL, migrations."""
