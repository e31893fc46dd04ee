"""SQLite persistence behind one executor thread."""
