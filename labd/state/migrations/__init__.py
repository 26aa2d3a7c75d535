"""labd's Alembic migrations (env.py, versions/): run in-process by labd.state.migrate, with no alembic.ini."""
