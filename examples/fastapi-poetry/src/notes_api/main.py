"""HTTP API: CRUD on /notes and a /health probe that checks the database."""

from contextlib import asynccontextmanager
from datetime import datetime
from typing import Annotated

import psycopg
from fastapi import Depends, FastAPI, HTTPException, Response, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from notes_api import db


class NoteIn(BaseModel):
    title: str = Field(min_length=1, max_length=200)
    body: str = Field(default="", max_length=10_000)


class NoteUpdate(BaseModel):
    title: str | None = Field(default=None, min_length=1, max_length=200)
    body: str | None = Field(default=None, max_length=10_000)


class Note(BaseModel):
    id: int
    title: str
    body: str
    created_at: datetime
    updated_at: datetime


@asynccontextmanager
async def lifespan(app: FastAPI):
    db.create_schema()
    yield


app = FastAPI(title="notes-api", lifespan=lifespan)

Conn = Annotated[psycopg.Connection, Depends(db.get_conn)]
COLUMNS = "id, title, body, created_at, updated_at"


def not_found(note_id: int) -> HTTPException:
    return HTTPException(status_code=404, detail=f"note {note_id} not found")


@app.get("/health")
def health():
    try:
        with db.connect(connect_timeout=2) as conn:
            conn.execute("SELECT 1").fetchone()
    except Exception as exc:  # any failure to reach the database means "not ready"
        return JSONResponse(
            status_code=503,
            content={"status": "unavailable", "detail": type(exc).__name__},
        )
    return {"status": "ok"}


@app.post("/notes", response_model=Note, status_code=status.HTTP_201_CREATED)
def create_note(note: NoteIn, conn: Conn):
    row = conn.execute(
        f"INSERT INTO notes (title, body) VALUES (%s, %s) RETURNING {COLUMNS}",
        (note.title, note.body),
    ).fetchone()
    conn.commit()
    return row


@app.get("/notes", response_model=list[Note])
def list_notes(conn: Conn):
    return conn.execute(f"SELECT {COLUMNS} FROM notes ORDER BY id").fetchall()


@app.get("/notes/{note_id}", response_model=Note)
def get_note(note_id: int, conn: Conn):
    row = conn.execute(f"SELECT {COLUMNS} FROM notes WHERE id = %s", (note_id,)).fetchone()
    if row is None:
        raise not_found(note_id)
    return row


@app.patch("/notes/{note_id}", response_model=Note)
def update_note(note_id: int, changes: NoteUpdate, conn: Conn):
    fields = changes.model_dump(exclude_unset=True)
    if any(value is None for value in fields.values()):
        raise HTTPException(status_code=422, detail="title and body cannot be null")
    row = conn.execute(
        "UPDATE notes SET title = COALESCE(%s, title), body = COALESCE(%s, body),"
        f" updated_at = now() WHERE id = %s RETURNING {COLUMNS}",
        (fields.get("title"), fields.get("body"), note_id),
    ).fetchone()
    if row is None:
        raise not_found(note_id)
    conn.commit()
    return row


@app.delete("/notes/{note_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_note(note_id: int, conn: Conn):
    cur = conn.execute("DELETE FROM notes WHERE id = %s", (note_id,))
    if cur.rowcount == 0:
        raise not_found(note_id)
    conn.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)
