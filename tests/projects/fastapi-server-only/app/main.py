# (a fixture project: its dependencies are in its image, not in stagecache's environment)
"""A notes service: FastAPI over PostgreSQL (DATABASE_URL)."""

import os

import psycopg
from fastapi import FastAPI
from pydantic import BaseModel

app = FastAPI()


class Note(BaseModel):
    text: str


def connect() -> psycopg.Connection:
    conn = psycopg.connect(os.environ["DATABASE_URL"], autocommit=True)
    conn.execute("CREATE TABLE IF NOT EXISTS notes (id serial PRIMARY KEY, text text NOT NULL)")
    return conn


@app.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/notes", status_code=201)
def add_note(note: Note) -> dict[str, object]:
    with connect() as conn:
        row = conn.execute("INSERT INTO notes (text) VALUES (%s) RETURNING id", (note.text,)).fetchone()
    assert row is not None
    return {"id": row[0], "text": note.text}


@app.get("/notes")
def list_notes() -> list[dict[str, object]]:
    with connect() as conn:
        rows = conn.execute("SELECT id, text FROM notes ORDER BY id").fetchall()
    return [{"id": id_, "text": text} for id_, text in rows]
