"""/v1/files/{id} and /v1/files/{id}/content: OpenAI's FileObject, bytes to the owner only."""

from __future__ import annotations

import httpx2

from batchin.protocol.accounts import UserCreated
from batchin.services import Services
from tests.conftest import MakeUser, assert_error, bearer


async def stored(services: Services, user: UserCreated, data: bytes = b"\x89PNG fake") -> str:
    obj = await services.files.store(
        user.id, data, filename="out put/../x.png", purpose="image_output", content_type="image/png"
    )
    return obj.id


async def test_metadata_is_a_file_object(
    services: Services, client: httpx2.AsyncClient, make_user: MakeUser
) -> None:
    user = await make_user()
    file_id = await stored(services, user)
    response = await client.get(f"/v1/files/{file_id}", headers=bearer(user.api_key))
    assert response.status_code == 200, response.text
    body = response.json()
    created_at = body.pop("created_at")
    assert isinstance(created_at, int)
    # The purge may remove it after BATCHIN_FILE_RETENTION_DAYS (30 by default).
    assert body.pop("expires_at") == created_at + 30 * 86400
    assert body == {
        "id": file_id,
        "object": "file",
        "bytes": 9,
        "filename": "out_put_.._x.png",
        "purpose": "image_output",
        "status": "processed",
    }


async def test_content_is_served_with_its_type(
    services: Services, client: httpx2.AsyncClient, make_user: MakeUser
) -> None:
    user = await make_user()
    file_id = await stored(services, user, b"hello bytes")
    response = await client.get(f"/v1/files/{file_id}/content", headers=bearer(user.api_key))
    assert response.status_code == 200
    assert response.content == b"hello bytes"
    assert response.headers["content-type"] == "image/png"
    stored_files = list((services.settings.data_dir / "files" / user.id).iterdir())
    assert [p.name for p in stored_files] == [f"{file_id}-out_put_.._x.png"]


async def test_another_user_gets_404(
    services: Services, client: httpx2.AsyncClient, make_user: MakeUser
) -> None:
    owner, other = await make_user(), await make_user()
    file_id = await stored(services, owner)
    for path in (f"/v1/files/{file_id}", f"/v1/files/{file_id}/content"):
        assert_error(await client.get(path, headers=bearer(other.api_key)), 404, "not_found")


async def test_unknown_file_is_404_and_anonymous_is_401(
    client: httpx2.AsyncClient, make_user: MakeUser
) -> None:
    user = await make_user()
    error = assert_error(
        await client.get("/v1/files/file-nope", headers=bearer(user.api_key)), 404, "not_found"
    )
    assert error["param"] == "file_id"
    assert_error(await client.get("/v1/files/file-nope/content"), 401, "unauthorized")


async def test_deleted_file_is_gone(
    services: Services, client: httpx2.AsyncClient, make_user: MakeUser
) -> None:
    user = await make_user()
    file_id = await stored(services, user)
    await services.files.delete(user.id, file_id)
    assert_error(await client.get(f"/v1/files/{file_id}", headers=bearer(user.api_key)), 404, "not_found")
    assert list((services.settings.data_dir / "files" / user.id).iterdir()) == []
