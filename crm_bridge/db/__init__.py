"""The database: models, engines and sessions, migrations."""
