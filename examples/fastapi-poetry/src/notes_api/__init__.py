"""A small notes service: FastAPI over PostgreSQL (psycopg 3)."""
