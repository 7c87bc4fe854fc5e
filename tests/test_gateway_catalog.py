"""The catalog API (storages, data collections, data units) over real HTTP and PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from runmesh.catalog import CatalogNotFoundError, DataUnitConflictError, repository
from runmesh.catalog.repository import DataFile, NewDataUnit

from .conftest import GatewayHandle


def new_tenant() -> str:
    """A tenant of the test's own: the catalog tables are shared by the whole session."""
    return f"tenant-{uuid.uuid4().hex[:8]}"


@contextlib.asynccontextmanager
async def api(gateway: GatewayHandle, tenant: str) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client authenticated as `tenant`."""
    token = await gateway.token(tenant)
    async with httpx.AsyncClient(
        base_url=gateway.url, headers={"Authorization": f"Bearer {token}"}, timeout=30
    ) as http:
        yield http


@pytest.fixture
def tenant() -> str:
    return new_tenant()


@pytest.fixture
async def http(gateway: GatewayHandle, tenant: str) -> AsyncIterator[httpx.AsyncClient]:
    async with api(gateway, tenant) as client:
        yield client


async def post(http: httpx.AsyncClient, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = await http.post(path, json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def error_locs(response: httpx.Response) -> list[list[Any]]:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    return [error["loc"] for error in response.json()["errors"]]


SPECS = "file_specifications"
AWS = "https://s3.eu-west-1.amazonaws.com"
IMAGES = {"name": "image", "required": True, "extensions": ["JPG", ".Jpeg"], "is_primary": True}
LABELS = {"name": "label", "required": False, "extensions": ["json"]}


def data_file(name: str, size: int = 10) -> DataFile:
    return {
        "uri": f"s3://bucket/{name}",
        "size": size,
        "checksum": f"sha256:{name}",
        "media_type": "image/jpeg",
    }


# -- storages --------------------------------------------------------------------------------


async def test_storages_are_created_listed_newest_first_and_got(
    http: httpx.AsyncClient, tmp_path: Path
) -> None:
    # Under the operator's allowed roots (the tests' tmp dirs) and allowed S3 endpoints (AWS).
    root = str(tmp_path / "data")
    file = await post(
        http, "/v1/storages", {"name": "local", "provider": "file", "config": {"root": root}}
    )
    s3 = await post(
        http,
        "/v1/storages",
        {
            "name": "bucket",
            "provider": "s3",
            "config": {"bucket": "my-data.v2", "prefix": "/raw/", "endpoint_url": AWS},
        },
    )
    web = await post(
        http,
        "/v1/storages",
        {"name": "web", "provider": "http", "config": {"base_url": "https://example.com/x/"}},
    )
    assert file["provider"] == "file" and file["config"] == {"root": root}
    assert s3["config"] == {
        "bucket": "my-data.v2",
        "prefix": "raw/",
        "endpoint_url": AWS,
        "region": None,
        "credentials": None,
    }
    assert web["config"] == {"base_url": "https://example.com/x/", "allow_private": False}

    got = await http.get(f"/v1/storages/{s3['id']}")
    assert got.status_code == 200 and got.json() == s3

    first = await http.get("/v1/storages", params={"limit": 2})
    assert first.status_code == 200, first.text
    page = first.json()
    assert [item["name"] for item in page["items"]] == ["web", "bucket"]
    assert page["next_cursor"]
    rest = (await http.get("/v1/storages", params={"cursor": page["next_cursor"]})).json()
    assert [item["name"] for item in rest["items"]] == ["local"]
    assert rest["next_cursor"] is None

    bad_cursor = await http.get("/v1/storages", params={"cursor": "not-a-cursor"})
    assert error_locs(bad_cursor) == [["query", "cursor"]]
    assert (await http.get("/v1/storages/not-a-uuid")).status_code == 422
    missing = await http.get(f"/v1/storages/{uuid.uuid4()}")
    assert missing.status_code == 404
    assert missing.headers["content-type"].startswith("application/problem+json")


async def test_duplicate_names_are_409_within_a_tenant_only(
    http: httpx.AsyncClient, gateway: GatewayHandle, tmp_path: Path
) -> None:
    storage = {"name": "dup", "provider": "file", "config": {"root": str(tmp_path / "a")}}
    collection = {"name": "dup", "file_specifications": [IMAGES]}
    await post(http, "/v1/storages", storage)
    await post(http, "/v1/data-collections", collection)

    again = await http.post("/v1/storages", json=storage | {"config": {"root": str(tmp_path)}})
    assert again.status_code == 409, again.text
    assert "dup" in again.json()["detail"]
    assert (await http.post("/v1/data-collections", json=collection)).status_code == 409

    async with api(gateway, new_tenant()) as other:
        await post(other, "/v1/storages", storage)
        await post(other, "/v1/data-collections", collection)


# (request body without its name, the error loc after "body" and the provider tag)
BAD_STORAGES: list[tuple[dict[str, Any], list[str]]] = [
    ({"provider": "file", "config": {"root": "data/images"}}, ["config", "root"]),
    ({"provider": "file", "config": {}}, ["config", "root"]),
    ({"provider": "file", "config": {"root": "/a", "key": "x"}}, ["config", "key"]),
    ({"provider": "s3", "config": {"bucket": "Bad_Bucket"}}, ["config", "bucket"]),
    ({"provider": "s3", "config": {"bucket": "ab"}}, ["config", "bucket"]),
    ({"provider": "s3", "config": {"bucket": "192.168.1.1"}}, ["config", "bucket"]),
    (
        {"provider": "s3", "config": {"bucket": "ok-bucket", "endpoint_url": "s3.local"}},
        ["config", "endpoint_url"],
    ),
    ({"provider": "http", "config": {"base_url": "ftp://host/x"}}, ["config", "base_url"]),
    ({"provider": "http", "config": {"base_url": "https://"}}, ["config", "base_url"]),
    ({"provider": "ftp", "config": {"root": "/a"}}, []),
    ({"name": "  ", "provider": "file", "config": {"root": "/a"}}, ["name"]),
]


async def test_invalid_storage_configs_are_422_naming_the_field(
    http: httpx.AsyncClient,
) -> None:
    for body, loc in BAD_STORAGES:
        response = await http.post("/v1/storages", json={"name": "bad"} | body)
        locs = error_locs(response)
        # Pydantic puts the provider tag between the body and the field: body.s3.config.bucket;
        # an unknown provider is an error of the whole body.
        expected = ["body", body["provider"], *loc] if loc else ["body"]
        assert locs == [expected], (body, response.text)
    assert (await http.get("/v1/storages")).json()["items"] == []


# -- data collections ------------------------------------------------------------------------


async def test_collections_are_created_with_normalised_extensions_listed_and_got(
    http: httpx.AsyncClient,
) -> None:
    schema = {"type": "object", "properties": {"camera": {"type": "string"}}}
    images = await post(
        http,
        "/v1/data-collections",
        {
            "name": "images",
            "description": "street photos",
            "file_specifications": [IMAGES | {"extensions": ["JPG", ".Jpeg", "jpg"]}, LABELS],
            "data_unit_meta_schema": schema,
        },
    )
    assert images["file_specifications"] == [
        {"name": "image", "required": True, "extensions": [".jpg", ".jpeg"], "is_primary": True},
        {"name": "label", "required": False, "extensions": [".json"], "is_primary": False},
    ]
    assert images["data_unit_meta_schema"] == schema and images["description"] == "street photos"
    plain = await post(
        http, "/v1/data-collections", {"name": "plain", "file_specifications": [LABELS]}
    )
    assert plain["description"] == "" and plain["data_unit_meta_schema"] is None

    got = await http.get(f"/v1/data-collections/{images['id']}")
    assert got.status_code == 200 and got.json() == images
    first = (await http.get("/v1/data-collections", params={"limit": 1})).json()
    assert [item["name"] for item in first["items"]] == ["plain"]
    rest = (await http.get("/v1/data-collections", params={"cursor": first["next_cursor"]})).json()
    assert [item["name"] for item in rest["items"]] == ["images"] and rest["next_cursor"] is None
    assert (await http.get(f"/v1/data-collections/{uuid.uuid4()}")).status_code == 404


# (changes to a valid request body, the error loc after "body")
BAD_COLLECTIONS: list[tuple[dict[str, Any], list[Any]]] = [
    ({SPECS: []}, [SPECS]),
    ({SPECS: [IMAGES, IMAGES | {"is_primary": False}]}, [SPECS]),  # names repeat
    ({SPECS: [IMAGES, LABELS | {"is_primary": True, "required": True}]}, [SPECS]),
    ({SPECS: [IMAGES | {"required": False}]}, [SPECS]),  # primary but optional
    ({SPECS: [IMAGES | {"extensions": ["j/pg"]}]}, [SPECS, 0, "extensions", 0]),
    ({SPECS: [IMAGES | {"extensions": []}]}, [SPECS, 0, "extensions"]),
    ({SPECS: [IMAGES | {"name": ""}]}, [SPECS, 0, "name"]),
    ({SPECS: [IMAGES | {"size": 3}]}, [SPECS, 0, "size"]),
    ({"data_unit_meta_schema": {"type": 5}}, ["data_unit_meta_schema"]),
    ({"data_unit_meta_schema": ["not", "an", "object"]}, ["data_unit_meta_schema"]),
]


async def test_invalid_file_specifications_are_422_naming_the_field(
    http: httpx.AsyncClient,
) -> None:
    for changes, loc in BAD_COLLECTIONS:
        body = {"name": "bad", SPECS: [IMAGES]} | changes
        response = await http.post("/v1/data-collections", json=body)
        assert error_locs(response) == [["body", *loc]], (changes, response.text)
    assert (await http.get("/v1/data-collections")).json()["items"] == []


# -- data units ------------------------------------------------------------------------------


async def test_upserted_data_units_are_listed_paged_updated_and_deleted_by_run(
    http: httpx.AsyncClient, gateway: GatewayHandle, tenant: str
) -> None:
    pool = gateway.app.state.deps.pool
    collection = await post(
        http, "/v1/data-collections", {"name": "units", "file_specifications": [IMAGES, LABELS]}
    )
    collection_id = uuid.UUID(collection["id"])
    run_a, run_b = uuid.uuid4(), uuid.uuid4()
    keys = ["c", "a", "e", "b", "d"]
    units = [
        NewDataUnit(unit_key=key, files={"image": data_file(f"{key}.jpg")}, meta={"n": i})
        for i, key in enumerate(keys)
    ]
    ids = await repository.upsert_data_units(pool, tenant, collection_id, run_a, units)
    assert len(ids) == 5 and ids == sorted(ids)
    other_ids = await repository.upsert_data_units(
        pool, tenant, collection_id, run_b, [NewDataUnit("a", {"image": data_file("b/a.jpg")})]
    )

    path = f"/v1/data-collections/{collection_id}/data-units"
    seen: list[dict[str, Any]] = []
    after: int | None = 0
    while after is not None:
        response = await http.get(path, params={"after_id": after, "limit": 2})
        assert response.status_code == 200, response.text
        page = response.json()
        assert len(page["items"]) <= 2
        seen += page["items"]
        after = page["next_after"]
    assert [unit["id"] for unit in seen] == [*ids, *other_ids]
    first = seen[0]
    assert first["unit_key"] == "c" and first["meta"] == {"n": 0}
    assert first["files"] == {"image": data_file("c.jpg")}
    assert first["upload_run_id"] == str(run_a) and first["data_collection_id"] == str(
        collection_id
    )
    got = await http.get(f"/v1/data-units/{ids[0]}")
    assert got.status_code == 200 and got.json() == first
    of_b = (await http.get(path, params={"upload_run_id": str(run_b)})).json()
    assert [unit["id"] for unit in of_b["items"]] == other_ids and of_b["next_after"] is None

    # The run executed again: the same (run, unit key) pairs update their rows.
    again = [
        NewDataUnit(unit_key=key, files={"image": data_file(f"{key}.jpg", 99)}, meta={"v": 2})
        for key in reversed(keys)
    ]
    assert await repository.upsert_data_units(pool, tenant, collection_id, run_a, again) == list(
        reversed(ids)
    )
    of_a = (await http.get(path, params={"upload_run_id": str(run_a)})).json()["items"]
    assert [unit["id"] for unit in of_a] == ids
    assert all(unit["meta"] == {"v": 2} for unit in of_a)
    assert all(unit["files"]["image"]["size"] == 99 for unit in of_a)
    assert all(unit["updated_at"] > unit["created_at"] for unit in of_a)

    assert await repository.delete_data_units_of_run(pool, tenant, run_a) == 5
    left = (await http.get(path)).json()
    assert [unit["id"] for unit in left["items"]] == other_ids
    assert (await http.get(f"/v1/data-units/{ids[0]}")).status_code == 404
    assert await repository.delete_data_units_of_run(pool, tenant, run_a) == 0


async def test_upsert_refuses_bad_batches_and_other_tenants_collections(
    http: httpx.AsyncClient, gateway: GatewayHandle, tenant: str
) -> None:
    pool = gateway.app.state.deps.pool
    first = await post(
        http, "/v1/data-collections", {"name": "one", "file_specifications": [IMAGES]}
    )
    second = await post(
        http, "/v1/data-collections", {"name": "two", "file_specifications": [IMAGES]}
    )
    run = uuid.uuid4()
    unit = NewDataUnit("k", {"image": data_file("k.jpg")})

    with pytest.raises(DataUnitConflictError, match="k"):
        await repository.upsert_data_units(pool, tenant, uuid.UUID(first["id"]), run, [unit, unit])
    with pytest.raises(CatalogNotFoundError):
        await repository.upsert_data_units(pool, new_tenant(), uuid.UUID(first["id"]), run, [unit])
    assert await repository.upsert_data_units(pool, tenant, uuid.UUID(first["id"]), run, []) == []

    [unit_id] = await repository.upsert_data_units(
        pool, tenant, uuid.UUID(first["id"]), run, [unit]
    )
    # The same run writing the same key into another collection would move the unit: refused,
    # and nothing of that batch is stored.
    other = NewDataUnit("other", {"image": data_file("o.jpg")})
    with pytest.raises(DataUnitConflictError, match="another collection"):
        await repository.upsert_data_units(
            pool, tenant, uuid.UUID(second["id"]), run, [other, unit]
        )
    assert (await http.get(f"/v1/data-collections/{second['id']}/data-units")).json()["items"] == []
    # Units without a run are always new rows.
    without_run = await repository.upsert_data_units(
        pool, tenant, uuid.UUID(first["id"]), None, [unit]
    )
    assert without_run != [unit_id]


# -- tenancy ---------------------------------------------------------------------------------


async def test_another_tenant_sees_none_of_the_catalog(
    http: httpx.AsyncClient, gateway: GatewayHandle, tenant: str, tmp_path: Path
) -> None:
    mine = {"name": "mine", "provider": "file", "config": {"root": str(tmp_path)}}
    storage = await post(http, "/v1/storages", mine)
    collection = await post(
        http, "/v1/data-collections", {"name": "mine", "file_specifications": [IMAGES]}
    )
    [unit_id] = await repository.upsert_data_units(
        gateway.app.state.deps.pool,
        tenant,
        uuid.UUID(collection["id"]),
        uuid.uuid4(),
        [NewDataUnit("x", {"image": data_file("x.jpg")})],
    )
    assert (await http.get(f"/v1/data-units/{unit_id}")).status_code == 200

    async with api(gateway, new_tenant()) as other:
        for path in (
            f"/v1/storages/{storage['id']}",
            f"/v1/data-collections/{collection['id']}",
            f"/v1/data-collections/{collection['id']}/data-units",
            f"/v1/data-units/{unit_id}",
        ):
            response = await other.get(path)
            assert response.status_code == 404, (path, response.text)
            assert response.headers["content-type"].startswith("application/problem+json")
        assert (await other.get("/v1/storages")).json() == {"items": [], "next_cursor": None}
        assert (await other.get("/v1/data-collections")).json() == {
            "items": [],
            "next_cursor": None,
        }

    async with httpx.AsyncClient(base_url=gateway.url) as anonymous:
        assert (await anonymous.get("/v1/storages")).status_code == 401
        assert (await anonymous.get(f"/v1/data-units/{unit_id}")).status_code == 401
        paths = (await anonymous.get("/openapi.json")).json()["paths"]
    assert paths["/v1/storages"]["post"]["summary"] == "Create a storage"
    assert {"201", "401", "409", "422"} <= set(paths["/v1/data-collections"]["post"]["responses"])
    assert "/v1/data-collections/{collection_id}/data-units" in paths


# -- data units registered by hand -----------------------------------------------------------


def hand_file(name: str, size: int = 10) -> dict[str, Any]:
    return {"uri": f"s3://bucket/hand/{name}", "size": size}


async def hand_storage(http: httpx.AsyncClient) -> None:
    """The tenant's storage that the hand-registered files lie in (a URI outside every
    storage of the tenant is refused)."""
    storage = {"bucket": "bucket", "prefix": "hand"}
    await post(http, "/v1/storages", {"name": "hand", "provider": "s3", "config": storage})


async def test_data_units_registered_by_hand_are_created_then_updated_in_place(
    http: httpx.AsyncClient, gateway: GatewayHandle, tenant: str
) -> None:
    await hand_storage(http)
    collection = await post(
        http, "/v1/data-collections", {"name": "hand", "file_specifications": [IMAGES, LABELS]}
    )
    path = f"/v1/data-collections/{collection['id']}/data-units"
    body = {
        "units": [
            {
                "unit_key": "cat_01",
                "files": {
                    "image": hand_file("cat_01.JPG")
                    | {"checksum": "sha256:ab", "media_type": "image/jpeg"},
                    "label": hand_file("cat_01.json"),
                },
                "meta": {"camera": "x100"},
            },
            {"unit_key": "cat_02", "files": {"image": hand_file("cat_02.jpeg")}},
        ]
    }
    first = await http.post(path, json=body)
    assert first.status_code == 201, first.text
    created = first.json()
    assert created["created"] == 2 and created["updated"] == 0
    ids = created["data_unit_ids"]
    assert len(ids) == 2 and ids == sorted(ids)

    listed = (await http.get(path)).json()["items"]
    assert [unit["id"] for unit in listed] == ids
    cat_01 = listed[0]
    assert cat_01["unit_key"] == "cat_01" and cat_01["upload_run_id"] is None
    assert cat_01["meta"] == {"camera": "x100"}
    assert cat_01["files"] == {
        "image": {
            "uri": "s3://bucket/hand/cat_01.JPG",
            "size": 10,
            "checksum": "sha256:ab",
            "media_type": "image/jpeg",
        },
        "label": {
            "uri": "s3://bucket/hand/cat_01.json",
            "size": 10,
            "checksum": None,
            "media_type": None,
        },
    }
    assert listed[1]["meta"] == {}
    assert (await http.get(f"/v1/data-units/{ids[1]}")).json() == listed[1]

    # The same request again: the same units, untouched (NULL run ids are distinct in the
    # UNIQUE constraint, so this is the route's doing, not the index's).
    again = await http.post(path, json=body)
    assert again.status_code == 200, again.text
    assert again.json() == {"data_unit_ids": ids, "created": 0, "updated": 0}
    assert (await http.get(path)).json()["items"] == listed

    # A changed unit and a new one, in another order: the old key keeps its id.
    changed = {
        "units": [
            {"unit_key": "cat_03", "files": {"image": hand_file("cat_03.jpg")}},
            {
                "unit_key": "cat_02",
                "files": {"image": hand_file("cat_02.jpg", 99)},
                "meta": {"v": 2},
            },
        ]
    }
    third = await http.post(path, json=changed)
    assert third.status_code == 201, third.text
    result = third.json()
    assert result["data_unit_ids"][1] == ids[1] and result["data_unit_ids"][0] > ids[1]
    assert (result["created"], result["updated"]) == (1, 1)
    units = {unit["unit_key"]: unit for unit in (await http.get(path)).json()["items"]}
    assert set(units) == {"cat_01", "cat_02", "cat_03"}
    assert units["cat_02"]["files"]["image"]["size"] == 99 and units["cat_02"]["meta"] == {"v": 2}
    assert units["cat_02"]["updated_at"] > units["cat_02"]["created_at"]
    assert units["cat_01"] == cat_01

    # An upload run's unit of the same key is the run's own: registering never touches it.
    pool = gateway.app.state.deps.pool
    run = uuid.uuid4()
    [run_unit] = await repository.upsert_data_units(
        pool,
        tenant,
        uuid.UUID(collection["id"]),
        run,
        [NewDataUnit("cat_01", {"image": data_file("r.jpg")})],
    )
    assert (await http.post(path, json=body)).json()["data_unit_ids"] == ids
    assert (await http.get(f"/v1/data-units/{run_unit}")).json()["upload_run_id"] == str(run)


async def test_concurrent_registrations_of_a_new_key_make_one_unit(
    http: httpx.AsyncClient,
) -> None:
    await hand_storage(http)
    collection = await post(
        http, "/v1/data-collections", {"name": "race", "file_specifications": [IMAGES]}
    )
    path = f"/v1/data-collections/{collection['id']}/data-units"
    body = {
        "units": [
            {"unit_key": f"k{i}", "files": {"image": hand_file(f"k{i}.jpg")}} for i in range(50)
        ]
    }
    answers = await asyncio.gather(*(http.post(path, json=body) for _ in range(4)))
    assert sorted(a.status_code for a in answers) == [200, 200, 200, 201], [a.text for a in answers]
    assert len({tuple(a.json()["data_unit_ids"]) for a in answers}) == 1
    listed = (await http.get(path, params={"limit": 1000})).json()["items"]
    assert len(listed) == 50


SCHEMA = {"type": "object", "properties": {"camera": {"type": "string"}}, "required": ["camera"]}
GOOD_UNIT = {"unit_key": "u", "files": {"image": hand_file("u.jpg")}, "meta": {"camera": "c"}}

# (a bad unit, the error locs after ["body", "units", 0], a part of the first message)
BAD_UNITS: list[tuple[dict[str, Any], list[list[Any]], str]] = [
    (
        GOOD_UNIT | {"files": {"image": hand_file("u.jpg"), "depth": hand_file("u.png")}},
        [["files", "depth"]],
        "not a file specification",
    ),
    (
        GOOD_UNIT | {"files": {"label": hand_file("u.json")}},
        [["files"]],
        "missing required file specification(s) image",
    ),
    (
        GOOD_UNIT | {"files": {"image": hand_file("u.bmp")}},
        [["files", "image", "uri"]],
        "extension .bmp not allowed for image (.jpg, .jpeg)",
    ),
    (GOOD_UNIT | {"meta": {"camera": 5}}, [["meta", "camera"]], "5 is not of type 'string'"),
    (GOOD_UNIT | {"meta": {}}, [["meta"]], "'camera' is a required property"),
    # Refused before the route by the gateway's request guard, naming the field itself.
    (GOOD_UNIT | {"meta": {"camera": "a\x00"}}, [["meta", "camera"]], "NUL"),
    (GOOD_UNIT | {"unit_key": ""}, [["unit_key"]], "at least 1 character"),
    (GOOD_UNIT | {"files": {}}, [["files"]], "at least 1 item"),
    (
        GOOD_UNIT | {"files": {"image": {"uri": "ftp://h/u.jpg", "size": 1}}},
        [["files", "image", "uri"]],
        "URI",
    ),
    (
        GOOD_UNIT | {"files": {"image": {"uri": "s3://b/u.jpg"}}},
        [["files", "image", "size"]],
        "required",
    ),
    (
        GOOD_UNIT | {"files": {"image": hand_file("u.jpg") | {"size": -1}}},
        [["files", "image", "size"]],
        "greater than or equal to 0",
    ),
]


async def test_units_that_do_not_fit_the_collection_are_422_naming_the_field(
    http: httpx.AsyncClient,
) -> None:
    await hand_storage(http)
    collection = await post(
        http,
        "/v1/data-collections",
        {
            "name": "strict",
            "file_specifications": [IMAGES, LABELS],
            "data_unit_meta_schema": SCHEMA,
        },
    )
    path = f"/v1/data-collections/{collection['id']}/data-units"
    for unit, locs, message in BAD_UNITS:
        # A good unit first: nothing of a batch with a bad unit is stored.
        response = await http.post(path, json={"units": [unit, GOOD_UNIT | {"unit_key": "ok"}]})
        assert error_locs(response) == [["body", "units", 0, *loc] for loc in locs], (
            unit,
            response.text,
        )
        assert message in response.json()["errors"][0]["msg"], (unit, response.text)

    repeated = await http.post(path, json={"units": [GOOD_UNIT, GOOD_UNIT]})
    assert error_locs(repeated) == [["body", "units"]]
    assert "'u' repeat" in repeated.json()["errors"][0]["msg"]
    assert error_locs(await http.post(path, json={"units": []})) == [["body", "units"]]
    too_many = {"units": [GOOD_UNIT | {"unit_key": f"u{i}"} for i in range(1001)]}
    assert error_locs(await http.post(path, json=too_many)) == [["body", "units"]]
    assert (await http.get(path)).json()["items"] == []

    assert (await http.post(path, json={"units": [GOOD_UNIT]})).status_code == 201


async def test_registering_into_another_tenants_collection_is_404(
    http: httpx.AsyncClient, gateway: GatewayHandle
) -> None:
    collection = await post(
        http, "/v1/data-collections", {"name": "private", "file_specifications": [IMAGES]}
    )
    path = f"/v1/data-collections/{collection['id']}/data-units"
    body = {"units": [{"unit_key": "x", "files": {"image": hand_file("x.jpg")}}]}
    async with api(gateway, new_tenant()) as other:
        response = await other.post(path, json=body)
        assert response.status_code == 404, response.text
        assert response.headers["content-type"].startswith("application/problem+json")
        missing = await other.post(f"/v1/data-collections/{uuid.uuid4()}/data-units", json=body)
        assert missing.status_code == 404
    assert (await http.get(path)).json()["items"] == []
    async with httpx.AsyncClient(base_url=gateway.url) as anonymous:
        assert (await anonymous.post(path, json=body)).status_code == 401
