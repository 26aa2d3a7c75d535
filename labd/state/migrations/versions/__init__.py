"""Revisions of labd's schema, oldest first: 0001 is the schema labd made with create_all before migrations."""
