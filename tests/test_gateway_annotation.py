"""The annotation catalog (projects, tasks, assignments, ground truth) over real HTTP and
PostgreSQL, and the export readers that stream it."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from runmesh.catalog import (
    CatalogNotFoundError,
    ExportItem,
    GroundTruthItemIn,
    LabelClass,
    annotation,
    count_export_items,
    export_label_classes,
    ground_truth,
    repository,
    stream_export_items,
)
from runmesh.catalog.repository import DataFile, NewDataUnit
from runmesh.core.db import load_migrations
from runmesh.dm import parse_dm

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


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    return body


def error_locs(response: httpx.Response) -> list[list[Any]]:
    return [error["loc"] for error in problem(response, 422)["errors"]]


SPECS = [
    {"name": "image", "extensions": [".jpg"], "is_primary": True},
    {"name": "label", "required": False, "extensions": [".json"]},
    {"name": "depth", "required": False, "extensions": [".png"]},
]
CLASSES = {"classes": [{"id": 0, "name": "cat"}, {"id": 7, "name": "person"}]}


def unit_files(key: str) -> dict[str, DataFile]:
    """Three files per unit: exports must hand over every one, not only the primary."""
    return {
        spec: {
            "uri": f"s3://bucket/{key}.{ext}",
            "size": len(key) + i,
            "checksum": f"sha256:{key}{i}",
            "media_type": media,
        }
        for i, (spec, ext, media) in enumerate(
            [("image", "jpg", "image/jpeg"), ("label", "json", None), ("depth", "png", "image/png")]
        )
    }


def dm(*classes: str, name: str = "a.jpg") -> dict[str, Any]:
    """A DM document: one 640x480 image with a box per class name."""
    return {
        "images": [
            {
                "file_name": name,
                "width": 640,
                "height": 480,
                "annotations": [
                    {
                        "id": f"b{i}",
                        "type": "bounding_box",
                        "class_name": class_name,
                        "bbox": [10.0 * i, 5.0, 20.0, 30.5],
                    }
                    for i, class_name in enumerate(classes)
                ],
            }
        ]
    }


def stored(document: dict[str, Any]) -> dict[str, Any]:
    """A DM document as the catalog stores it: validated, defaults filled in."""
    return parse_dm(document).model_dump(mode="json")


async def seed_units(
    gateway: GatewayHandle, http: httpx.AsyncClient, tenant: str, count: int, name: str = "photos"
) -> tuple[str, list[int]]:
    """A data collection of the tenant with `count` units; its id and the unit ids."""
    collection = await post(
        http, "/v1/data-collections", {"name": name, "file_specifications": SPECS}
    )
    units = [NewDataUnit(f"u{i:05d}", unit_files(f"u{i:05d}"), {"n": i}) for i in range(count)]
    ids = await repository.upsert_data_units(
        gateway.app.state.deps.pool, tenant, uuid.UUID(collection["id"]), uuid.uuid4(), units
    )
    return collection["id"], ids


async def new_project(
    http: httpx.AsyncClient, collection_id: str, name: str = "pets"
) -> dict[str, Any]:
    return await post(
        http,
        "/v1/projects",
        {
            "name": name,
            "data_collection_id": collection_id,
            "annotation_type": "image_detection",
            "label_schema": CLASSES,
        },
    )


async def all_pages(
    http: httpx.AsyncClient, path: str, params: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    """Every item of an `after_id`-paged list, two per page."""
    items: list[dict[str, Any]] = []
    after: int | None = 0
    while after is not None:
        response = await http.get(path, params={**(params or {}), "after_id": after, "limit": 2})
        assert response.status_code == 200, response.text
        page = response.json()
        assert len(page["items"]) <= 2
        items += page["items"]
        after = page["next_after"]
    return items


async def test_the_annotation_migration_can_run_again(gateway: GatewayHandle) -> None:
    [migration] = [m for m in load_migrations("runmesh.catalog") if m.version == 2]
    assert migration.name == "0002_annotation.sql"
    async with gateway.app.state.deps.pool.acquire() as conn, conn.transaction():
        await conn.execute(migration.sql)  # the gateway applied it at start-up already
        tables = await conn.fetchval(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'catalog' AND tablename = ANY($1)",
            ["projects", "tasks", "assignments", "ground_truth_datasets",
             "ground_truth_versions", "ground_truth_items"],
        )  # fmt: skip
    assert tables == 6


# -- projects --------------------------------------------------------------------------------


# (changes to a valid request body, the error loc after "body")
LS, CL = "label_schema", "classes"
BAD_PROJECTS: list[tuple[dict[str, Any], list[Any]]] = [
    ({"annotation_type": "video_tracking"}, ["annotation_type"]),
    ({LS: {CL: []}}, [LS, CL]),
    ({LS: {CL: [{"id": -1, "name": "x"}]}}, [LS, CL, 0, "id"]),
    ({LS: {CL: [{"id": 1, "name": " "}]}}, [LS, CL, 0, "name"]),
    ({LS: {CL: [{"id": 1, "name": "a"}, {"id": 1, "name": "b"}]}}, [LS, CL]),  # ids repeat
    ({LS: {CL: [{"id": 1, "name": "a"}, {"id": 2, "name": "a"}]}}, [LS, CL]),  # names repeat
    ({LS: {CL: [{"id": 1, "name": "a", "colour": "red"}]}}, [LS, CL, 0, "colour"]),
    ({"data_collection_id": "not-a-uuid"}, ["data_collection_id"]),
    ({"owner": "me"}, ["owner"]),
]


async def test_projects_are_created_listed_got_and_validated(
    http: httpx.AsyncClient, gateway: GatewayHandle
) -> None:
    collection = await post(
        http, "/v1/data-collections", {"name": "photos", "file_specifications": SPECS}
    )
    first = await new_project(http, collection["id"], "first")
    second = await new_project(http, collection["id"], "second")
    assert first["data_collection_id"] == collection["id"]
    assert first["annotation_type"] == "image_detection" and first["description"] == ""
    assert first["label_schema"] == CLASSES
    got = await http.get(f"/v1/projects/{first['id']}")
    assert got.status_code == 200 and got.json() == first

    page = (await http.get("/v1/projects", params={"limit": 1})).json()
    assert [item["name"] for item in page["items"]] == ["second"] and page["next_cursor"]
    rest = (await http.get("/v1/projects", params={"cursor": page["next_cursor"]})).json()
    assert rest == {"items": [first], "next_cursor": None}
    assert second["id"] != first["id"]

    again = await http.post(
        "/v1/projects",
        json={
            "name": "first",
            "data_collection_id": collection["id"],
            "annotation_type": "image_classification",
            "label_schema": CLASSES,
        },
    )
    assert "first" in problem(again, 409)["detail"]

    valid = {
        "name": "bad",
        "data_collection_id": collection["id"],
        "annotation_type": "image_keypoints",
        "label_schema": CLASSES,
    }
    for changes, loc in BAD_PROJECTS:
        response = await http.post("/v1/projects", json=valid | changes)
        assert error_locs(response) == [["body", *loc]], (changes, response.text)
    async with api(gateway, new_tenant()) as other:
        theirs = await post(
            other, "/v1/data-collections", {"name": "theirs", "file_specifications": SPECS}
        )
    for collection_id in (theirs["id"], str(uuid.uuid4())):
        response = await http.post(
            "/v1/projects", json=valid | {"data_collection_id": collection_id}
        )
        assert error_locs(response) == [["body", "data_collection_id"]]
        assert collection_id in response.json()["detail"]
    assert len((await http.get("/v1/projects")).json()["items"]) == 2
    assert (await http.get(f"/v1/projects/{uuid.uuid4()}")).status_code == 404


# -- tasks -----------------------------------------------------------------------------------


async def test_tasks_are_made_once_per_unit_of_the_projects_collection(
    http: httpx.AsyncClient, gateway: GatewayHandle, tenant: str
) -> None:
    collection_id, units = await seed_units(gateway, http, tenant, 5)
    _, elsewhere = await seed_units(gateway, http, tenant, 1, name="elsewhere")
    project = await new_project(http, collection_id)
    path = f"/v1/projects/{project['id']}/tasks"

    first = await post(http, path, {"data_unit_ids": units[:3]})
    assert first["created"] == 3 and len(first["task_ids"]) == 3
    # A repeated request (to_task executed again) finds the tasks that exist.
    more = await post(http, path, {"data_unit_ids": [units[4], *units[:3], units[3], units[4]]})
    assert more["created"] == 2
    assert more["task_ids"][1:4] == first["task_ids"] and more["task_ids"][0] == more["task_ids"][5]
    same = await http.post(path, json={"data_unit_ids": units})
    assert same.status_code == 200, same.text
    assert same.json()["created"] == 0 and len(set(same.json()["task_ids"])) == 5

    # Units of another collection (or tenant, or none) are refused, and nothing is stored.
    refused = await http.post(path, json={"data_unit_ids": [units[0], elsewhere[0], 10**12]})
    assert error_locs(refused) == [["body", "data_unit_ids"]]
    assert str(elsewhere[0]) in refused.json()["detail"]
    assert error_locs(await http.post(path, json={"data_unit_ids": []})) == [
        ["body", "data_unit_ids"]
    ]
    assert error_locs(await http.post(path, json={"data_unit_ids": [0]})) == [
        ["body", "data_unit_ids", 0]
    ]
    too_many = await http.post(path, json={"data_unit_ids": list(range(1, 10_002))})
    assert error_locs(too_many) == [["body", "data_unit_ids"]]
    missing = await http.post(f"/v1/projects/{uuid.uuid4()}/tasks", json={"data_unit_ids": units})
    assert problem(missing, 404)["detail"].startswith("project ")

    tasks = await all_pages(http, "/v1/tasks", {"project_id": project["id"]})
    assert [task["data_unit_id"] for task in tasks] == [*units[:3], units[4], units[3]]
    assert {task["status"] for task in tasks} == {"pending"}
    assert all(task["data"] is None and task["project_id"] == project["id"] for task in tasks)
    got = await http.get(f"/v1/tasks/{tasks[0]['id']}")
    assert got.status_code == 200 and got.json() == tasks[0]


async def test_task_data_is_validated_dm_with_classes_of_the_label_schema(
    http: httpx.AsyncClient, gateway: GatewayHandle, tenant: str
) -> None:
    collection_id, units = await seed_units(gateway, http, tenant, 4)
    project = await new_project(http, collection_id)
    task_ids = (await post(http, f"/v1/projects/{project['id']}/tasks", {"data_unit_ids": units}))[
        "task_ids"
    ]
    data_path = f"/v1/tasks/{task_ids[0]}/data"

    document = dm("cat", "person")
    response = await http.put(data_path, json=document, params={"status": "in_progress"})
    assert response.status_code == 200, response.text
    task = response.json()
    assert task["data"] == stored(document) and task["status"] == "in_progress"
    assert task["updated_at"] > task["created_at"]
    # Without `status` the status stays.
    kept = await http.put(data_path, json=dm("cat"))
    assert kept.json()["status"] == "in_progress" and kept.json()["data"] == stored(dm("cat"))

    bad_box = dm("cat")
    bad_box["images"][0]["annotations"][0]["bbox"] = [0, 0, -1, 5]
    assert error_locs(await http.put(data_path, json=bad_box)) == [
        ["body", "images", 0, "annotations", 0, "bounding_box", "bbox"]
    ]
    bad_size = dm("cat") | {"images": [dm("cat")["images"][0] | {"width": 0}]}
    assert error_locs(await http.put(data_path, json=bad_size)) == [["body", "images", 0, "width"]]
    assert error_locs(await http.put(data_path, json={"images": [], "extra": 1})) == [
        ["body", "extra"]
    ]
    bad_status = await http.put(data_path, json=dm("cat"), params={"status": "done"})
    assert error_locs(bad_status) == [["query", "status"]]

    unknown = await http.put(data_path, json=dm("cat", "dog", "person", "horse", "dog"))
    body = problem(unknown, 422)
    assert body["unknown_classes"] == ["dog", "horse"]
    assert "'dog'" in body["detail"] and "'horse'" in body["detail"]
    assert [error["loc"] for error in body["errors"]] == [
        ["body", "images", 0, "annotations", i, "class_name"] for i in (1, 3, 4)
    ]
    # Nothing of a refused document is stored.
    after = (await http.get(f"/v1/tasks/{task_ids[0]}")).json()
    assert after["data"] == stored(dm("cat"))

    assert (await http.put("/v1/tasks/999999999999/data", json=dm("cat"))).status_code == 404
    assert (await http.get("/v1/tasks/999999999999")).status_code == 404
    assert (await http.get("/v1/tasks/0")).status_code == 422


async def test_tasks_are_listed_by_project_and_status_in_pages(
    http: httpx.AsyncClient, gateway: GatewayHandle, tenant: str
) -> None:
    collection_id, units = await seed_units(gateway, http, tenant, 5)
    first = await new_project(http, collection_id, "first")
    second = await new_project(http, collection_id, "second")
    ids_first = (await post(http, f"/v1/projects/{first['id']}/tasks", {"data_unit_ids": units}))[
        "task_ids"
    ]
    ids_second = (
        await post(http, f"/v1/projects/{second['id']}/tasks", {"data_unit_ids": units[:2]})
    )["task_ids"]
    for task_id in ids_first[1:4]:
        response = await http.put(
            f"/v1/tasks/{task_id}/data", json=dm("cat"), params={"status": "completed"}
        )
        assert response.status_code == 200, response.text

    every = await all_pages(http, "/v1/tasks")
    assert [task["id"] for task in every] == sorted([*ids_first, *ids_second])
    of_first = await all_pages(http, "/v1/tasks", {"project_id": first["id"]})
    assert [task["id"] for task in of_first] == ids_first
    completed = await all_pages(
        http, "/v1/tasks", {"project_id": first["id"], "status": "completed"}
    )
    assert [task["id"] for task in completed] == ids_first[1:4]
    assert all(task["data"] == stored(dm("cat")) for task in completed)
    pending = await all_pages(http, "/v1/tasks", {"status": "pending"})
    assert [task["id"] for task in pending] == sorted([ids_first[0], ids_first[4], *ids_second])
    assert (await http.get("/v1/tasks", params={"project_id": str(uuid.uuid4())})).json() == {
        "items": [],
        "next_after": None,
    }
    assert error_locs(await http.get("/v1/tasks", params={"status": "finished"})) == [
        ["query", "status"]
    ]
    assert error_locs(await http.get("/v1/tasks", params={"limit": 501})) == [["query", "limit"]]


async def test_assignments_are_added_to_tasks_and_listed(
    http: httpx.AsyncClient, gateway: GatewayHandle, tenant: str
) -> None:
    collection_id, units = await seed_units(gateway, http, tenant, 1)
    project = await new_project(http, collection_id)
    [task_id] = (await post(http, f"/v1/projects/{project['id']}/tasks", {"data_unit_ids": units}))[
        "task_ids"
    ]
    path = f"/v1/tasks/{task_id}/assignments"
    submitted = await post(http, path, {"data": dm("cat")})
    assert submitted["status"] == "submitted" and submitted["task_id"] == task_id
    assert submitted["data"] == stored(dm("cat"))
    approved = await post(http, path, {"status": "approved", "data": dm("person")})
    rejected = await post(http, path, {"status": "rejected", "data": dm()})

    assert await all_pages(http, path) == [submitted, approved, rejected]
    unknown = await http.post(path, json={"data": dm("cat", "dog")})
    assert error_locs(unknown) == [["body", "data", "images", 0, "annotations", 1, "class_name"]]
    assert unknown.json()["unknown_classes"] == ["dog"]
    assert error_locs(await http.post(path, json={"status": "done", "data": dm()})) == [
        ["body", "status"]
    ]
    assert len(await all_pages(http, path)) == 3
    assert (
        await http.post("/v1/tasks/999999999999/assignments", json={"data": dm()})
    ).status_code == 404
    assert (await http.get("/v1/tasks/999999999999/assignments")).status_code == 404


# -- ground truth ----------------------------------------------------------------------------


async def test_ground_truth_datasets_versions_and_items(
    http: httpx.AsyncClient, gateway: GatewayHandle, tenant: str
) -> None:
    collection_id, units = await seed_units(gateway, http, tenant, 3)
    project = await new_project(http, collection_id)
    dataset = await post(
        http,
        "/v1/ground-truth-datasets",
        {"name": "gold", "description": "checked twice", "project_id": project["id"]},
    )
    assert dataset["project_id"] == project["id"] and dataset["description"] == "checked twice"
    free = await post(http, "/v1/ground-truth-datasets", {"name": "free"})
    assert free["project_id"] is None
    got = await http.get(f"/v1/ground-truth-datasets/{dataset['id']}")
    assert got.status_code == 200 and got.json() == dataset
    listed = (await http.get("/v1/ground-truth-datasets")).json()
    assert [item["name"] for item in listed["items"]] == ["free", "gold"]
    assert problem(await http.post("/v1/ground-truth-datasets", json={"name": "gold"}), 409)
    not_mine = await http.post(
        "/v1/ground-truth-datasets", json={"name": "x", "project_id": str(uuid.uuid4())}
    )
    assert error_locs(not_mine) == [["body", "project_id"]]

    versions = f"/v1/ground-truth-datasets/{dataset['id']}/versions"
    items = [
        {"data_unit_id": units[0], "category": "train", "data": dm("cat")},
        {"data_unit_id": units[1], "category": "validation", "data": dm("person", "cat")},
        {"category": "test", "data": dm()},
        {"data_unit_id": units[2], "data": dm("cat")},
    ]
    v1 = await post(http, versions, {"version": " v1 ", "items": items})
    assert v1["version"] == "v1" and v1["item_count"] == 4 and v1["dataset_id"] == dataset["id"]
    v2 = await post(http, versions, {"version": "v2"})
    assert v2["item_count"] == 0
    assert "v1" in problem(await http.post(versions, json={"version": "v1"}), 409)["detail"]

    unknown = await http.post(
        versions, json={"version": "v3", "items": [items[0], {"data": dm("cat", "dog")}]}
    )
    assert error_locs(unknown) == [
        ["body", "items", 1, "data", "images", 0, "annotations", 1, "class_name"]
    ]
    missing_unit = await http.post(
        versions, json={"version": "v3", "items": [{"data_unit_id": 10**12, "data": dm()}]}
    )
    assert error_locs(missing_unit) == [["body", "items"]]
    bad_split = await http.post(
        versions, json={"version": "v3", "items": [{"category": "dev", "data": dm()}]}
    )
    assert error_locs(bad_split) == [["body", "items", 0, "category"]]
    # A dataset without a project takes any class.
    free_v1 = await post(
        http,
        f"/v1/ground-truth-datasets/{free['id']}/versions",
        {"version": "v1", "items": [{"data": dm("dog")}]},
    )
    assert free_v1["item_count"] == 1

    page = (await http.get(versions, params={"limit": 1})).json()
    assert [v["version"] for v in page["items"]] == ["v2"]
    rest = (await http.get(versions, params={"cursor": page["next_cursor"]})).json()
    assert rest == {"items": [v1], "next_cursor": None}
    assert (await http.get(f"/v1/ground-truth-versions/{v1['id']}")).json() == v1

    stored_items = await all_pages(http, f"/v1/ground-truth-versions/{v1['id']}/items")
    assert [(i["data_unit_id"], i["category"], i["data"]) for i in stored_items] == [
        (item.get("data_unit_id"), item.get("category"), stored(item["data"])) for item in items
    ]
    assert {item["version_id"] for item in stored_items} == {v1["id"]}
    trains = await all_pages(
        http, f"/v1/ground-truth-versions/{v1['id']}/items", {"category": "train"}
    )
    assert [item["id"] for item in trains] == [stored_items[0]["id"]]
    empty = await http.get(f"/v1/ground-truth-versions/{v2['id']}/items")
    assert empty.json() == {"items": [], "next_after": None}
    for path in (
        f"/v1/ground-truth-versions/{uuid.uuid4()}/items",
        f"/v1/ground-truth-versions/{uuid.uuid4()}",
        f"/v1/ground-truth-datasets/{uuid.uuid4()}/versions",
    ):
        assert (await http.get(path)).status_code == 404, path
    assert (
        await http.post(f"/v1/ground-truth-datasets/{uuid.uuid4()}/versions", json={"version": "a"})
    ).status_code == 404


# -- tenancy ---------------------------------------------------------------------------------


async def test_another_tenant_sees_none_of_the_annotation_catalog(
    http: httpx.AsyncClient, gateway: GatewayHandle, tenant: str
) -> None:
    collection_id, units = await seed_units(gateway, http, tenant, 2)
    project = await new_project(http, collection_id)
    [task_id, _] = (
        await post(http, f"/v1/projects/{project['id']}/tasks", {"data_unit_ids": units})
    )["task_ids"]
    await post(http, f"/v1/tasks/{task_id}/assignments", {"data": dm("cat")})
    dataset = await post(
        http, "/v1/ground-truth-datasets", {"name": "gold", "project_id": project["id"]}
    )
    version = await post(
        http,
        f"/v1/ground-truth-datasets/{dataset['id']}/versions",
        {"version": "v1", "items": [{"data_unit_id": units[0], "data": dm("cat")}]},
    )

    async with api(gateway, new_tenant()) as other:
        for method, path, body in [
            ("GET", f"/v1/projects/{project['id']}", None),
            ("POST", f"/v1/projects/{project['id']}/tasks", {"data_unit_ids": units}),
            ("GET", f"/v1/tasks/{task_id}", None),
            ("PUT", f"/v1/tasks/{task_id}/data", dm("cat")),
            ("GET", f"/v1/tasks/{task_id}/assignments", None),
            ("POST", f"/v1/tasks/{task_id}/assignments", {"data": dm("cat")}),
            ("GET", f"/v1/ground-truth-datasets/{dataset['id']}", None),
            ("GET", f"/v1/ground-truth-datasets/{dataset['id']}/versions", None),
            ("POST", f"/v1/ground-truth-datasets/{dataset['id']}/versions", {"version": "v2"}),
            ("GET", f"/v1/ground-truth-versions/{version['id']}", None),
            ("GET", f"/v1/ground-truth-versions/{version['id']}/items", None),
        ]:
            response = await other.request(method, path, json=body)
            problem(response, 404)
        for path in ("/v1/projects", "/v1/ground-truth-datasets"):
            assert (await other.get(path)).json() == {"items": [], "next_cursor": None}
        assert (await other.get("/v1/tasks")).json() == {"items": [], "next_after": None}
        # Naming the other tenant's rows in a body is a 422, as if they did not exist.
        theirs = await post(
            other, "/v1/data-collections", {"name": "c", "file_specifications": SPECS}
        )
        their_project = await new_project(other, theirs["id"])
        refused = await other.post(
            f"/v1/projects/{their_project['id']}/tasks", json={"data_unit_ids": units}
        )
        assert error_locs(refused) == [["body", "data_unit_ids"]]
        their_dataset = await post(other, "/v1/ground-truth-datasets", {"name": "gold"})
        borrowed = await other.post(
            f"/v1/ground-truth-datasets/{their_dataset['id']}/versions",
            json={"version": "v1", "items": [{"data_unit_id": units[0], "data": dm()}]},
        )
        assert error_locs(borrowed) == [["body", "items"]]
        assert error_locs(
            await other.post(
                "/v1/ground-truth-datasets", json={"name": "x", "project_id": project["id"]}
            )
        ) == [["body", "project_id"]]

    assert (await http.get(f"/v1/tasks/{task_id}")).json()["data"] is None
    async with httpx.AsyncClient(base_url=gateway.url, timeout=10) as anonymous:
        for path in ("/v1/projects", "/v1/tasks", "/v1/ground-truth-datasets"):
            assert (await anonymous.get(path)).status_code == 401
        paths = (await anonymous.get("/openapi.json")).json()["paths"]
    assert paths["/v1/tasks/{task_id}/data"]["put"]["summary"] == "Set a task's annotations"
    assert {"200", "201", "404", "422"} <= set(
        paths["/v1/projects/{project_id}/tasks"]["post"]["responses"]
    )


# -- export readers --------------------------------------------------------------------------


async def collect(stream: AsyncIterator[ExportItem]) -> list[ExportItem]:
    return [item async for item in stream]


async def test_export_items_follow_the_filters_and_carry_every_file(
    http: httpx.AsyncClient, gateway: GatewayHandle, tenant: str
) -> None:
    pool = gateway.app.state.deps.pool
    collection_id, units = await seed_units(gateway, http, tenant, 4)
    project = await new_project(http, collection_id)
    project_id = uuid.UUID(project["id"])
    created = await annotation.create_tasks(pool, tenant, project_id, units)
    tasks = created.task_ids
    for task_id, document, status in [
        (tasks[1], dm("cat"), "completed"),
        (tasks[2], dm("person"), "review"),
    ]:
        response = await http.put(
            f"/v1/tasks/{task_id}/data", json=document, params={"status": status}
        )
        assert response.status_code == 200, response.text
    approved = await post(
        http, f"/v1/tasks/{tasks[1]}/assignments", {"status": "approved", "data": dm("cat")}
    )
    submitted = await post(http, f"/v1/tasks/{tasks[2]}/assignments", {"data": dm("person")})

    everything = await collect(stream_export_items(pool, tenant, "task", {"project": project_id}))
    assert [item.id for item in everything] == list(tasks)
    first, annotated = everything[0], everything[1]
    assert first.target == "task" and first.data is None and first.status == "pending"
    assert first.data_unit_id == units[0] and first.unit_key == "u00000"
    assert first.files == unit_files("u00000") and first.primary_spec == "image"
    assert first.meta == {"n": 0} and first.task_id == tasks[0] and first.category is None
    assert annotated.data == stored(dm("cat")) and annotated.status == "completed"
    assert annotated.files == unit_files("u00001")

    completed = await collect(
        stream_export_items(pool, tenant, "task", {"project": project_id, "status": "completed"})
    )
    assert [item.id for item in completed] == [tasks[1]]
    assert await count_export_items(pool, tenant, "task", {"project": project_id}) == 4
    assert (
        await count_export_items(
            pool, tenant, "task", {"project": str(project_id), "status": "review"}
        )
        == 1
    )

    assignments = await collect(
        stream_export_items(pool, tenant, "assignment", {"project": project_id})
    )
    assert [(item.id, item.task_id, item.status) for item in assignments] == [
        (approved["id"], tasks[1], "approved"),
        (submitted["id"], tasks[2], "submitted"),
    ]
    assert assignments[0].files == unit_files("u00001") and assignments[0].primary_spec == "image"
    assert assignments[1].data == stored(dm("person")) and assignments[1].data_unit_id == units[2]
    only_approved = {"project": project_id, "status": "approved"}
    assert [
        i.id for i in await collect(stream_export_items(pool, tenant, "assignment", only_approved))
    ] == [approved["id"]]
    assert await count_export_items(pool, tenant, "assignment", only_approved) == 1
    assert await count_export_items(pool, tenant, "assignment", {"project": project_id}) == 2

    dataset = await post(http, "/v1/ground-truth-datasets", {"name": "gold"})
    version = await ground_truth.create_ground_truth_version(
        pool,
        tenant,
        uuid.UUID(dataset["id"]),
        "v1",
        [
            GroundTruthItemIn(data_unit_id=units[3], category="test", data=parse_dm(dm("cat"))),
            GroundTruthItemIn(data=parse_dm(dm("dog"))),
        ],
    )
    gt_filter = {"ground_truth_dataset_version": version.id}
    items = await collect(stream_export_items(pool, tenant, "ground_truth", gt_filter))
    assert [(item.target, item.category, item.data_unit_id) for item in items] == [
        ("ground_truth", "test", units[3]),
        ("ground_truth", None, None),
    ]
    assert items[0].files == unit_files("u00003") and items[0].primary_spec == "image"
    assert items[0].meta == {"n": 3} and items[0].unit_key == "u00003"
    assert items[1].files == {} and items[1].primary_spec is None and items[1].meta == {}
    assert items[1].data == stored(dm("dog"))
    assert await count_export_items(pool, tenant, "ground_truth", gt_filter) == 2
    resumed = await collect(
        stream_export_items(pool, tenant, "ground_truth", gt_filter, after_id=items[0].id)
    )
    assert [item.id for item in resumed] == [items[1].id]

    # The classes: the project's label schema by id; a dataset without a project has the
    # names its items use.
    for target, chosen in [
        ("task", {"project": project_id}),
        ("assignment", {"project": project_id}),
    ]:
        assert await annotation.export_classes(pool, tenant, target, chosen) == ["cat", "person"]
        assert await export_label_classes(pool, tenant, target, chosen) == [
            LabelClass(id=0, name="cat"),
            LabelClass(id=7, name="person"),
        ]
    assert await export_label_classes(pool, tenant, "ground_truth", gt_filter) == [
        LabelClass(id=0, name="cat"),
        LabelClass(id=1, name="dog"),
    ]
    of_project = await post(
        http, "/v1/ground-truth-datasets", {"name": "of project", "project_id": project["id"]}
    )
    empty = await ground_truth.create_ground_truth_version(
        pool, tenant, uuid.UUID(of_project["id"]), "v1", []
    )
    assert await annotation.export_classes(
        pool, tenant, "ground_truth", {"ground_truth_dataset_version": str(empty.id)}
    ) == ["cat", "person"]

    # Filters are checked per target; another tenant's project or version is not found.
    for target, bad in [
        ("task", {}),
        ("task", {"project": project_id, "status": "approved"}),
        ("assignment", {"project": project_id, "status": "completed"}),
        ("ground_truth", {"project": project_id}),
        ("task", {"project": project_id, "assignment": 3}),
    ]:
        with pytest.raises(ValidationError):
            await count_export_items(pool, tenant, target, bad)
        with pytest.raises(ValidationError):
            await collect(stream_export_items(pool, tenant, target, bad))
    with pytest.raises(ValueError, match="unknown export target"):
        await count_export_items(pool, tenant, "dataset", {})
    other = new_tenant()
    for target, chosen in [
        ("task", {"project": project_id}),
        ("assignment", {"project": project_id}),
        ("ground_truth", gt_filter),
    ]:
        with pytest.raises(CatalogNotFoundError):
            await count_export_items(pool, other, target, chosen)
        with pytest.raises(CatalogNotFoundError):
            await collect(stream_export_items(pool, other, target, chosen))
        with pytest.raises(CatalogNotFoundError):
            await export_label_classes(pool, other, target, chosen)


async def open_cursors(conn: Any) -> int:
    """Server-side cursors (named portals) open on the connection; this query's own portal is
    the unnamed one."""
    count: int = await conn.fetchval("SELECT count(*) FROM pg_cursors WHERE name <> ''")
    return count


async def stream_in_steps(
    conn: Any, tenant: str, target: str, chosen: dict[str, Any], expected: Sequence[int]
) -> None:
    """Read the stream with a prefetch far below its length, checking between items that the
    rows come through an open server-side cursor, and that it is gone at the end."""
    seen: list[int] = []
    async with contextlib.aclosing(
        stream_export_items(conn, tenant, target, chosen, prefetch=100)
    ) as stream:
        async for item in stream:
            seen.append(item.id)
            if len(seen) in (1, len(expected) // 2):  # rows remain: the cursor is open
                assert await open_cursors(conn) == 1
    assert seen == list(expected)
    assert not conn.is_in_transaction() and await open_cursors(conn) == 0


async def test_export_items_stream_through_a_server_side_cursor(
    http: httpx.AsyncClient, gateway: GatewayHandle, tenant: str
) -> None:
    pool = gateway.app.state.deps.pool
    count = 2_500
    collection_id, units = await seed_units(gateway, http, tenant, count)
    project = await new_project(http, collection_id)
    project_id = uuid.UUID(project["id"])
    tasks = (await annotation.create_tasks(pool, tenant, project_id, units)).task_ids
    # Every other task gets an assignment (one statement: the API's path is tested above).
    await pool.execute(
        "INSERT INTO catalog.assignments (tenant, task_id, data)"
        " SELECT $1, unnest($2::bigint[]), $3::text::jsonb",
        tenant,
        list(tasks[::2]),
        parse_dm(dm("cat")).model_dump_json(),
    )
    dataset = await post(http, "/v1/ground-truth-datasets", {"name": "big"})
    version = await ground_truth.create_ground_truth_version(
        pool,
        tenant,
        uuid.UUID(dataset["id"]),
        "v1",
        [GroundTruthItemIn(data_unit_id=unit, data=parse_dm(dm("cat"))) for unit in units],
    )
    assert version.item_count == count
    gt_ids = [
        item.id
        for item in await ground_truth.list_ground_truth_items(
            pool, tenant, version.id, limit=count
        )
    ]
    assignment_ids = sorted(
        row["id"]
        for row in await pool.fetch("SELECT id FROM catalog.assignments WHERE tenant = $1", tenant)
    )

    async with pool.acquire() as conn:
        await stream_in_steps(conn, tenant, "task", {"project": project_id}, tasks)
        await stream_in_steps(conn, tenant, "assignment", {"project": project_id}, assignment_ids)
        await stream_in_steps(
            conn, tenant, "ground_truth", {"ground_truth_dataset_version": version.id}, gt_ids
        )
        # Stopping early closes the cursor and its transaction.
        async with contextlib.aclosing(
            stream_export_items(conn, tenant, "task", {"project": project_id}, prefetch=50)
        ) as stream:
            async for _ in stream:
                break
        assert not conn.is_in_transaction() and await open_cursors(conn) == 0
        # Inside the caller's transaction the stream uses it and leaves it open.
        async with conn.transaction():
            items = await collect(
                stream_export_items(conn, tenant, "task", {"project": project_id}, prefetch=999)
            )
            assert len(items) == count and conn.is_in_transaction()
    assert await count_export_items(pool, tenant, "task", {"project": project_id}) == count
    assert await count_export_items(pool, tenant, "assignment", {"project": project_id}) == 1_250
