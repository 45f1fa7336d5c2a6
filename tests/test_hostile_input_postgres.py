"""Values PostgreSQL cannot hold (NUL in text) are a 400 that writes nothing, not a 500."""

import pytest

from .api_helpers import assert_error, bread, nothing_written

pytestmark = pytest.mark.postgres


@pytest.fixture
def database_url(postgres_url):
    """Run this module's app on PostgreSQL."""
    return postgres_url


def test_nul_in_text_is_a_400_that_writes_nothing(app, client):
    rye = bread(client)
    with nothing_written(app):
        assert_error(
            client.post("/api/bread_types", json={"name": "a\x00b", "price": 1}),
            400,
            "invalid_value",
        )
        assert_error(
            client.patch(f"/api/bread_types/{rye['id']}", json={"name": "a\x00b"}),
            400,
            "invalid_value",
        )
        assert_error(client.get("/api/bread_types?name=eq.a%00b"), 400, "invalid_value")
    assert client.get("/api/bread_types").get_json()["rows"] == [rye]
