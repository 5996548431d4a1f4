import pytest


def create(client, title="groceries", body="milk, eggs"):
    response = client.post("/notes", json={"title": title, "body": body})
    assert response.status_code == 201, response.text
    return response.json()


def test_health_checks_the_database(client):
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_health_is_503_when_the_database_is_unreachable(client, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgresql://nobody:nothing@127.0.0.1:1/none")
    response = client.get("/health")
    assert response.status_code == 503
    assert response.json()["status"] == "unavailable"


def test_create_returns_the_stored_note(client):
    note = create(client)
    assert note["id"] == 1
    assert note["title"] == "groceries"
    assert note["body"] == "milk, eggs"
    assert note["created_at"] and note["updated_at"]


def test_body_defaults_to_empty(client):
    response = client.post("/notes", json={"title": "just a title"})
    assert response.status_code == 201
    assert response.json()["body"] == ""


def test_list_is_empty_at_start(client):
    response = client.get("/notes")
    assert response.status_code == 200
    assert response.json() == []


def test_list_returns_notes_in_creation_order(client):
    first = create(client, "first")
    second = create(client, "second")
    response = client.get("/notes")
    assert response.status_code == 200
    assert [n["id"] for n in response.json()] == [first["id"], second["id"]]


def test_get_one(client):
    note = create(client)
    response = client.get(f"/notes/{note['id']}")
    assert response.status_code == 200
    assert response.json() == note


def test_update_changes_only_given_fields(client):
    note = create(client)
    response = client.patch(f"/notes/{note['id']}", json={"body": "bread"})
    assert response.status_code == 200
    updated = response.json()
    assert updated["title"] == "groceries"
    assert updated["body"] == "bread"
    assert updated["updated_at"] >= note["updated_at"]
    assert client.get(f"/notes/{note['id']}").json() == updated


def test_delete_removes_the_note(client):
    note = create(client)
    response = client.delete(f"/notes/{note['id']}")
    assert response.status_code == 204
    assert client.get(f"/notes/{note['id']}").status_code == 404
    assert client.get("/notes").json() == []


@pytest.mark.parametrize(
    ("method", "payload"),
    [("get", None), ("patch", {"title": "x"}), ("delete", None)],
)
def test_missing_note_is_404(client, method, payload):
    kwargs = {"json": payload} if payload is not None else {}
    response = getattr(client, method)("/notes/999", **kwargs)
    assert response.status_code == 404
    assert response.json() == {"detail": "note 999 not found"}


@pytest.mark.parametrize(
    "payload",
    [{}, {"title": ""}, {"title": 42}, {"title": "ok", "body": None}, {"title": "x" * 201}],
)
def test_invalid_create_is_422(client, payload):
    response = client.post("/notes", json=payload)
    assert response.status_code == 422
    assert client.get("/notes").json() == []


def test_invalid_update_is_422(client):
    note = create(client)
    assert client.patch(f"/notes/{note['id']}", json={"title": ""}).status_code == 422
    assert client.patch(f"/notes/{note['id']}", json={"title": None}).status_code == 422
    assert client.get(f"/notes/{note['id']}").json() == note


def test_non_integer_id_is_422(client):
    assert client.get("/notes/abc").status_code == 422


def test_each_test_starts_empty(client):
    # Runs after tests that created notes: the fixture truncated the table.
    assert client.get("/notes").json() == []
    assert create(client)["id"] == 1
