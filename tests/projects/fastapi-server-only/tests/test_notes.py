# (a fixture project: its dependencies are in its image, not in stagecache's environment)
from app.main import app
from fastapi.testclient import TestClient

client = TestClient(app)


def test_starts_from_an_empty_database() -> None:
    assert client.get("/notes").json() == []


def test_health() -> None:
    assert client.get("/health").json() == {"status": "ok"}


def test_a_note_is_kept() -> None:
    created = client.post("/notes", json={"text": "buy milk"})
    assert created.status_code == 201
    assert [n["text"] for n in client.get("/notes").json()] == ["buy milk"]
