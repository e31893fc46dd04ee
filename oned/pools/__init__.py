"""Object pools: write-through in-memory copies of the database tables."""
