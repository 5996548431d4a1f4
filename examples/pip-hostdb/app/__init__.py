"""A visit counter kept in PostgreSQL: the small service of the pip-hostdb example."""
