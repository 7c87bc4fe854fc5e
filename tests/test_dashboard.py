"""The dashboard end to end: headless Chromium (Debian's `chromium`, driven by Playwright) on a
real gateway, with in-process workers of the demo plugin (`hello.count`, slow enough to watch
with `delay_s`) and of the test kit (`echo`, which reports an artifact).

The gateway and the workers are shared by the module (starting them is most of its time); each
test signs in with a token of a tenant of its own, so it only ever sees its own runs.
"""

from __future__ import annotations

import re
import shutil
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, ConsoleMessage, Page, async_playwright, expect
from pydantic import BaseModel

from runmesh.catalog.trained_models import NewModel, register_model
from runmesh.cli.services import demo_plugin_dir
from runmesh.core.db import create_pool
from runmesh.core.events import (
    EVENT_TYPES,
    MetricPayload,
    StartedPayload,
    SucceededPayload,
    encode,
)
from runmesh.core.kafka import make_producer
from runmesh.core.settings import Settings
from runmesh.core.testing import eventually
from runmesh.core.topics import Topics
from runmesh.storage import platform_storage

from .conftest import PLUGINS, GatewayHandle, service_worker

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None:
    pytest.skip(
        "no Chromium on PATH: the dashboard tests drive the system's `chromium` "
        "(Debian package `chromium`); `playwright install` is not used",
        allow_module_level=True,
    )

pytestmark = pytest.mark.slow

DEMO_CATEGORY = "demo"


JSON = {"Accept": "application/json"}


class Api:
    """REST calls of one tenant, as a script next to the dashboard would make them."""

    def __init__(self, gateway: GatewayHandle, token: str, tenant: str) -> None:
        self.token = token
        self.tenant = tenant
        self.http = httpx.AsyncClient(
            base_url=gateway.url, headers={"Authorization": f"Bearer {token}"}, timeout=30
        )

    async def submit(
        self, action: str = "count", category: str = DEMO_CATEGORY, **params: Any
    ) -> str:
        response = await self.http.post(
            "/v1/runs", json={"category": category, "action": action, "params": params}
        )
        assert response.status_code == 202, response.text
        run_id: str = response.json()["id"]
        return run_id

    async def run(self, run_id: str) -> dict[str, Any]:
        response = await self.http.get(f"/v1/runs/{run_id}")
        assert response.status_code == 200, response.text
        run: dict[str, Any] = response.json()
        return run

    async def wait_state(self, run_id: str, *states: str, timeout: float = 30) -> dict[str, Any]:
        async def reached() -> dict[str, Any]:
            run = await self.run(run_id)
            return run if run["state"] in states else {}

        run: dict[str, Any] = await eventually(
            reached, timeout=timeout, interval=0.1, message=f"run {run_id} never {states}"
        )
        return run

    async def cancel_unfinished(self, *run_ids: str) -> None:
        """Leave the shared worker idle for the next test."""
        for run_id in run_ids:
            await self.http.post(f"/v1/runs/{run_id}/cancel")
        for run_id in run_ids:
            await self.wait_state(run_id, "succeeded", "failed", "cancelled")


@pytest.fixture(scope="module")
async def stack(module_settings: Settings) -> AsyncIterator[GatewayHandle]:
    """A gateway, a demo worker and a test-kit worker, once both plugins are announced."""
    settings = module_settings
    gateway = GatewayHandle(settings)
    await gateway.start()
    async with AsyncExitStack() as workers:
        await workers.enter_async_context(
            service_worker(settings, DEMO_CATEGORY, demo_plugin_dir(), service="demo")
        )
        await workers.enter_async_context(
            service_worker(settings, "test", PLUGINS / "testkit", service="test")
        )
        token = await gateway.token("dashboard-probe")
        async with httpx.AsyncClient(
            base_url=gateway.url, headers={"Authorization": f"Bearer {token}"}
        ) as http:

            async def announced() -> bool:
                listed = (await http.get("/v1/plugins")).json()["items"]
                codes = {plugin["code"] for plugin in listed}
                return {"hello", "testkit"} <= codes

            await eventually(announced, timeout=60, message="plugins never announced")
        yield gateway
    await gateway.stop()


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM)
        yield launched
        await launched.close()


@pytest.fixture
async def api(stack: GatewayHandle) -> AsyncIterator[Api]:
    """A tenant of the test's own, with a token."""
    tenant = f"dash-{uuid.uuid4().hex[:8]}"
    client = Api(stack, await stack.token(tenant), tenant)
    yield client
    await client.http.aclose()


@pytest.fixture
async def page(stack: GatewayHandle, browser: Browser) -> AsyncIterator[Page]:
    """A fresh browser context (empty local storage) on the gateway; the test fails on any
    script error or Content-Security-Policy violation."""
    context = await browser.new_context(base_url=stack.url, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(15_000)
    tab = await context.new_page()
    problems: list[str] = []
    tab.on("pageerror", lambda error: problems.append(f"page error: {error}"))

    def console(message: ConsoleMessage) -> None:
        # A refused token is a 401 the browser logs as a failed load: expected there.
        if message.type == "error" and "Failed to load resource" not in message.text:
            problems.append(f"console: {message.text}")

    tab.on("console", console)
    yield tab
    await context.close()
    assert not problems, problems


async def sign_in(page: Page, token: str, path: str = "/#/runs", *, valid: bool = True) -> None:
    await page.goto(path)
    await expect(page.locator("#login")).to_be_visible()
    await page.fill("#token-input", token)
    await page.click("#login-form button[type=submit]")
    if valid:
        await expect(page.locator("#login")).to_be_hidden()


async def percent_of(page: Page, selector: str) -> float:
    value = await page.locator(selector).get_attribute("aria-valuenow")
    return float(value or 0)


async def fill_width(page: Page, bar: str) -> float:
    """The drawn width of a progress bar's fill, in CSS pixels."""
    box = await page.locator(f"{bar} .fill").bounding_box()
    return box["width"] if box else 0.0


# -- tests -------------------------------------------------------------------------------------


async def test_token_form_stores_the_token_and_the_runs_list_loads(
    page: Page, api: Api, stack: GatewayHandle
) -> None:
    response = await page.goto("/")
    assert response is not None
    assert response.headers["cache-control"] == "no-cache"
    assert "default-src 'none'" in response.headers["content-security-policy"]
    run_id = await api.submit(to=3, delay_s=0)
    await api.wait_state(run_id, "succeeded")

    await sign_in(page, api.token)

    row = page.locator(f"tr[data-run-id='{run_id}']")
    await expect(row.locator(".badge")).to_have_text("succeeded")
    await expect(row).to_contain_text("hello")
    await expect(row).to_contain_text("count")
    await expect(row).to_contain_text(re.compile(r"just now|s ago"))
    await expect(row.get_by_role("progressbar")).to_have_attribute("aria-valuenow", "100.0")
    assert await page.evaluate("localStorage.getItem('runmesh.token')") == api.token

    # the filters go to GET /v1/runs: no failed run here
    await page.select_option("#filter-state", "failed")
    await expect(row).to_have_count(0)
    await expect(page.locator("p.empty")).to_be_visible()
    await page.select_option("#filter-state", "succeeded")
    await expect(row).to_have_count(1)

    # A run's name is a column, and a filter (any case, kept in the URL).
    named = await api.submit("echo", "test", name="Nightly import", count=1)
    await api.wait_state(named, "succeeded")
    named_row = page.locator(f"tr[data-run-id='{named}']")
    await expect(named_row.locator(".run-name")).to_have_text("Nightly import")
    await page.fill("#filter-name", "nightly")
    await expect(row).to_have_count(0)
    await expect(named_row).to_have_count(1)
    assert "name=nightly" in page.url
    await page.fill("#filter-name", "")
    await expect(row).to_have_count(1)

    await page.reload()  # the token survives a reload
    await expect(page.locator("#login")).to_be_hidden()
    await expect(row).to_have_count(1)

    await page.click("#sign-out")
    await expect(page.locator("#login")).to_be_visible()
    assert await page.evaluate("localStorage.getItem('runmesh.token')") is None


async def test_a_submitted_run_appears_live_and_its_progress_bar_moves(
    page: Page, api: Api, tmp_path: Path
) -> None:
    await sign_in(page, api.token)
    await expect(page.locator("#live")).to_have_attribute("data-state", "live")
    await expect(page.locator("tr[data-run-id]")).to_have_count(0)

    run_id = await api.submit(to=40, delay_s=0.1)  # about 4 s
    row = page.locator(f"tr[data-run-id='{run_id}']")
    bar = f"tr[data-run-id='{run_id}'] [role=progressbar]"
    # No reload: the run arrives through the tenant's event stream (the list's fallback poll
    # is every 30 s, far beyond this wait).
    await expect(row).to_be_visible(timeout=10_000)

    async def started() -> float:
        value = await percent_of(page, bar)
        return value if 0 < value < 100 else 0.0  # 0.0: not yet

    first = await eventually(started, timeout=15, interval=0.05, message="bar never moved")
    await page.screenshot(path=tmp_path / "progress-1.png")
    first_width = await fill_width(page, bar)

    async def moved_on() -> float:
        value = await percent_of(page, bar)
        return value if value > first else 0.0

    second = await eventually(moved_on, timeout=15, interval=0.05, message="bar stopped")
    await page.wait_for_timeout(350)  # the width's CSS transition
    await page.screenshot(path=tmp_path / "progress-2.png")
    second_width = await fill_width(page, bar)

    assert second > first
    assert second_width > first_width
    assert (tmp_path / "progress-1.png").stat().st_size > 0
    assert (tmp_path / "progress-2.png").stat().st_size > 0
    await expect(row.locator(".badge")).to_have_text("succeeded", timeout=20_000)
    await expect(page.locator(bar)).to_have_attribute("aria-valuenow", "100.0")


async def test_the_run_page_shows_progress_logs_metrics_and_result(page: Page, api: Api) -> None:
    await sign_in(page, api.token)
    run_id = await api.submit(to=20, delay_s=0.05)
    await page.goto(f"/#/runs/{run_id}")  # opened while queued: everything arrives live

    await expect(page.locator("#run-state")).to_have_text("succeeded", timeout=20_000)
    await expect(page.locator("#overall-progress")).to_have_attribute("aria-valuenow", "100.0")
    category = page.locator("tr[data-category='count']")
    await expect(category).to_contain_text("20 / 20")
    await expect(category).to_contain_text("Counting")  # the action's category description
    await expect(page.locator(".facts")).to_contain_text("hello@1.0.0")

    logs = page.locator("#logs .line")
    await expect(logs.filter(has_text="counting to 20")).to_have_count(1)
    success = logs.filter(has_text="counted to 20")
    await expect(success).to_have_count(1)
    await expect(success).to_contain_text("COUNT_DONE")

    charts = page.locator("figure.chart[data-categories='count']")
    await expect(charts).to_have_count(2)  # total and sqrt_total, one series each
    total = page.locator("figure.chart[data-name='total']")
    series = total.locator(".series[data-category='count']")
    await expect(series).to_contain_text("latest 210")
    await expect(series).to_have_attribute("data-points", "2")  # reported at 10 and 20
    await expect(total.locator(".plot")).to_have_attribute("aria-label", re.compile("2 points"))
    await expect(total.locator(".uplot canvas")).to_be_visible()

    await expect(page.locator("#outcome pre")).to_contain_text('"counted": 20')
    await expect(page.locator("#cancel-run")).to_have_count(0)

    # the level filter hides info lines, keeps the success line
    await page.uncheck("#level-info")
    await expect(logs.filter(has_text="counting to 20")).to_be_hidden()
    await expect(success).to_be_visible()


async def test_artifacts_show_their_uri_and_download_through_the_gateway(
    page: Page, api: Api, stack: GatewayHandle, tmp_path: Path
) -> None:
    await sign_in(page, api.token)
    run_id = await api.submit("echo", "test", name="ada", count=3)
    await api.wait_state(run_id, "succeeded")
    # The echo action reports the artifact without writing it: put its bytes where it says.
    folder = f"runs/{api.tenant}/{run_id}"
    async with platform_storage(stack.settings.s3) as storage:
        await storage.write_bytes(f"{folder}/echo.txt", b"echo ada\n")
    await page.goto(f"/#/runs/{run_id}")

    artifact = page.locator("#artifacts li[data-name='echo.txt']")
    uri = f"s3://{stack.settings.s3_bucket}/{folder}/echo.txt"
    await expect(artifact.locator("input.uri")).to_have_value(uri)
    await expect(artifact.get_by_role("button", name="Copy URI")).to_be_visible()
    await expect(artifact.get_by_role("link")).to_have_count(0)  # s3:// is no browser link
    async with page.expect_download() as download_info:
        await artifact.get_by_role("button", name="Download").click()
    download = await download_info.value
    assert download.suggested_filename == "echo.txt"
    await download.save_as(tmp_path / "artifact.txt")
    assert (tmp_path / "artifact.txt").read_bytes() == b"echo ada\n"
    # Only artifact events of the tenant's run: anything else is a 404.
    events = (await api.http.get(f"/v1/runs/{run_id}/events", headers=JSON)).json()
    log_id = next(e["id"] for e in events if e["type"] == "run.log")
    assert (await api.http.get(f"/v1/runs/{run_id}/artifacts/{log_id}")).status_code == 404
    other = await stack.token(f"other-{uuid.uuid4().hex[:6]}")
    artifact_id = next(e["id"] for e in events if e["type"] == "run.artifact")
    stranger = await api.http.get(
        f"/v1/runs/{run_id}/artifacts/{artifact_id}", headers={"Authorization": f"Bearer {other}"}
    )
    assert stranger.status_code == 404
    await expect(page.locator("#outcome pre")).to_contain_text('"name": "ada"')


async def test_a_failed_run_shows_its_error_and_traceback_as_text(page: Page, api: Api) -> None:
    hostile = '<img src=x onerror="document.title=1">boom'
    run_id = await api.submit("fail", "test", message=hostile)
    await api.wait_state(run_id, "failed")
    await sign_in(page, api.token, f"/#/runs/{run_id}")

    outcome = page.locator("#outcome")
    await expect(page.locator("#run-state")).to_have_text("failed")
    await expect(outcome.locator("p.error")).to_have_text(f"ValueError: {hostile}")
    await expect(outcome.locator("img")).to_have_count(0)  # text, never markup
    traceback = outcome.locator("details pre.traceback")
    await expect(traceback).to_be_hidden()  # folded
    await outcome.locator("details summary").click()
    await expect(traceback).to_contain_text("ValueError")


async def test_cancel_from_the_run_page_then_rerun(page: Page, api: Api) -> None:
    run_id = await api.submit(to=300, delay_s=0.1)  # 30 s unless cancelled
    rerun_id: str | None = None
    try:
        await sign_in(page, api.token, f"/#/runs/{run_id}")
        await expect(page.locator("#run-state")).to_have_text("running", timeout=20_000)
        await page.click("#cancel-run")
        await expect(page.locator("#run-state")).to_have_text("cancelled", timeout=15_000)
        await expect(page.locator("#cancel-run")).to_have_count(0)
        await expect(page.locator("#status")).to_contain_text("Cancel")

        await page.click("#rerun-run")
        await page.wait_for_url(re.compile(r"#/runs/(?!" + run_id + r")[0-9a-f-]{36}$"))
        rerun_id = page.url.rsplit("/", 1)[1]
        await expect(page.locator("#parent-link")).to_have_text(run_id[:8])
        assert (await api.run(rerun_id))["parent_run_id"] == run_id
    finally:
        await api.cancel_unfinished(run_id, *([rerun_id] if rerun_id else []))


async def test_a_pipeline_page_shows_its_steps_resumes_and_reruns(page: Page, api: Api) -> None:
    steps = {
        "count": {"category": DEMO_CATEGORY, "action": "count", "params": {"to": 3}},
        "boom": {"category": "test", "action": "fail", "params": {}, "needs": ["count"]},
        "after": {"category": "test", "action": "fail", "params": {}, "needs": ["boom"]},
        "side": {"category": "test", "action": "echo", "params": {"name": "s", "count": 1}},
    }
    response = await api.http.post(
        "/v1/pipelines", json={"pipeline": {"name": "dash", "steps": steps}}
    )
    assert response.status_code == 202, response.text
    run_id = response.json()["run"]["id"]
    await api.wait_state(run_id, "failed")
    await sign_in(page, api.token, f"/#/runs/{run_id}")

    graph = page.locator("#pipeline-steps")
    expected = {"count": "succeeded", "boom": "failed", "after": "skipped", "side": "succeeded"}
    for name, state in expected.items():
        await expect(graph.locator(f'[data-step="{name}"]')).to_have_attribute("data-state", state)
    # One column per depth: count and side first, then boom, then after.
    columns = graph.locator(".step-column")
    await expect(columns).to_have_count(3)
    await expect(columns.nth(0).locator(".step-card")).to_have_count(2)
    await expect(columns.nth(2).locator('[data-step="after"]')).to_have_count(1)
    done = graph.locator('[data-step="count"] [role=progressbar]')
    await expect(done).to_have_attribute("aria-valuenow", "100.0")
    step_run = (await api.http.get(f"/v1/pipelines/{run_id}")).json()["steps"][0]["run_id"]
    await expect(graph.locator('[data-step="count"] a')).to_have_attribute(
        "href", f"#/runs/{step_run}"
    )

    await page.click("#resume-pipeline")
    await page.wait_for_url(re.compile(r"#/runs/(?!" + run_id + r")[0-9a-f-]{36}$"))
    resumed_id = page.url.rsplit("/", 1)[1]
    await expect(page.locator("#parent-link")).to_have_text(run_id[:8])
    # The resumed run took over what succeeded and ran the failed step again.
    await expect(graph.locator('[data-step="count"] a')).to_have_attribute(
        "href", f"#/runs/{step_run}"
    )
    await expect(graph.locator('[data-step="boom"]')).to_have_attribute("data-state", "failed")
    await expect(page.locator("#run-state")).to_have_text("failed")

    await page.click("#rerun-run")  # a pipeline's rerun starts every step anew
    await page.wait_for_url(re.compile(r"#/runs/(?!" + resumed_id + r")[0-9a-f-]{36}$"))
    rerun_id = page.url.rsplit("/", 1)[1]
    await expect(graph.locator('[data-step="boom"]')).to_have_attribute("data-state", "failed")
    rerun = (await api.http.get(f"/v1/pipelines/{rerun_id}")).json()
    assert rerun["run"]["parent_run_id"] == resumed_id
    assert step_run not in {step["run_id"] for step in rerun["steps"]}


async def test_a_result_naming_a_model_links_to_the_model_page(
    page: Page, api: Api, stack: GatewayHandle
) -> None:
    trainer = await api.submit("noop", "test")
    await api.wait_state(trainer, "succeeded")
    pool = await create_pool(stack.settings.database, min_size=1, max_size=1)
    try:
        async with pool.acquire() as conn:
            model = await register_model(
                conn,
                api.tenant,
                NewModel(
                    name=f"detector-{uuid.uuid4().hex[:6]}",
                    description="",
                    plugin="runmesh-train",
                    plugin_version="1.0.0",
                    action="train",
                    run_id=uuid.UUID(trainer),
                    dataset={"export_run": trainer},
                    classes=["cat", "dog"],
                    params={"epochs": 3},
                    metrics={"validation_box_accuracy": 0.875},
                    artifact_uri=f"s3://runmesh/models/{api.tenant}/{trainer}/model.npz",
                ),
            )
    finally:
        await pool.close()
    run_id = await api.submit("give_result", "test", result={"model_id": str(model.id)})
    await api.wait_state(run_id, "succeeded")
    await sign_in(page, api.token, f"/#/runs/{run_id}")

    await page.click("#result-model")
    await page.wait_for_url(re.compile(rf"#/models/{model.id}$"))
    await expect(page.locator("#view h1")).to_have_text(model.name)
    await expect(page.locator("#model-classes")).to_have_text("cat, dog")
    await expect(page.locator("#model-metrics")).to_contain_text("validation_box_accuracy")
    await expect(page.locator("#model-metrics")).to_contain_text("0.8750")
    await expect(page.locator("#model-weights")).to_contain_text("model.npz")
    await page.click("#model-run")
    await page.wait_for_url(re.compile(rf"#/runs/{trainer}$"))


async def test_progress_categories_show_in_the_order_the_action_declares(
    page: Page, api: Api
) -> None:
    run_id = await api.submit("two_phases", "test")
    await api.wait_state(run_id, "succeeded")
    await sign_in(page, api.token, f"/#/runs/{run_id}")
    rows = page.locator("table.progress tbody tr")
    await expect(rows).to_have_count(2)
    # Declared download, then ok; the stored manifest (JSONB) holds them as ok, download.
    await expect(rows.nth(0)).to_have_attribute("data-category", "download")
    await expect(rows.nth(1)).to_have_attribute("data-category", "ok")


async def test_a_held_run_says_what_it_waits_for(page: Page, api: Api) -> None:
    body = {
        "category": DEMO_CATEGORY,
        "action": "count",
        "params": {"to": 1},
        "placement": {"labels": ["tpu"]},  # no worker of the stack has it
        "priority": 8,
    }
    response = await api.http.post("/v1/runs", json=body)
    assert response.status_code == 202, response.text
    run_id = response.json()["id"]
    await sign_in(page, api.token, f"/#/runs/{run_id}")
    await expect(page.locator("#run-pool")).to_have_text("none yet")
    await expect(page.locator("#run-priority")).to_have_text("8")
    await expect(page.locator("#run-queue")).to_have_text(
        f"waiting for a worker of {DEMO_CATEGORY} with labels tpu (none is live)"
    )
    # The runs list shows its place in its queue, and why it waits on hover.
    await page.goto("/#/runs?state=queued")
    position = page.locator(f"tr[data-run-id='{run_id}'] .queue-position")
    await expect(position).to_have_text(" #1")
    await expect(position).to_have_attribute(
        "title", f"waiting for a worker of {DEMO_CATEGORY} with labels tpu (none is live)"
    )
    await page.goto(f"/#/runs/{run_id}")
    await page.locator("#cancel-run").click()
    await expect(page.locator("#run-state")).to_have_text("cancelled")
    await expect(page.locator("#run-queue")).to_have_count(0)


async def test_the_schedules_page_lists_them_and_pauses_and_resumes(page: Page, api: Api) -> None:
    body = {
        "name": "nightly",
        "cron": "0 3 * * *",
        "timezone": "Europe/Berlin",
        "run": {"category": DEMO_CATEGORY, "action": "count", "params": {"to": 1}},
    }
    response = await api.http.post("/v1/schedules", json=body)
    assert response.status_code == 201, response.text
    await sign_in(page, api.token, "/#/schedules")
    row = page.locator("tr[data-schedule='nightly']")
    await expect(row).to_contain_text("0 3 * * *")
    await expect(row).to_contain_text("Europe/Berlin")
    await expect(row.locator("td.num")).to_have_text("0 / 0")
    await row.get_by_role("button", name="Pause").click()
    await expect(row.locator("td.next")).to_have_text("paused")
    await row.get_by_role("button", name="Resume").click()
    await expect(row.locator("td.next time")).to_have_count(1)
    paused = await api.http.get(f"/v1/schedules/{response.json()['id']}")
    assert paused.json()["paused"] is False


async def test_the_plugins_page_shows_the_params_schema(page: Page, api: Api) -> None:
    await sign_in(page, api.token, "/#/plugins")
    row = page.locator("tr[data-plugin='hello']")
    await expect(row).to_contain_text("demo")
    await page.select_option("#filter-plugin-category", "demo")
    await expect(page.locator("tr[data-plugin='testkit']")).to_have_count(0)

    await row.get_by_role("link", name="hello").click()
    # The stack's demo worker, with the sandbox's defaults.
    await expect(page.locator("#served-by")).to_have_text(
        "Served by 1 live worker (pool default), 0 of 8 slots busy."
    )
    action = page.locator("details.version[open] article[data-action='count']")
    await expect(action).to_contain_text("job")
    schema = action.locator("pre.json")
    await expect(schema).to_be_visible()
    await expect(schema).to_contain_text('"delay_s"')
    await expect(schema).to_contain_text('"maximum": 100000')
    await expect(action.locator("table.params")).to_contain_text("Pause between numbers")
    await expect(action.locator("table.progress-categories")).to_contain_text("Counting")


async def test_a_wrong_token_returns_to_the_form_with_an_error(
    page: Page, stack: GatewayHandle
) -> None:
    await sign_in(page, "rmt_not-a-real-token", valid=False)
    await expect(page.locator("#login")).to_be_visible()
    await expect(page.locator("#login-error")).to_contain_text("unknown or revoked")
    assert await page.evaluate("localStorage.getItem('runmesh.token')") is None


async def publish(
    stack: GatewayHandle,
    tenant: str,
    run_id: uuid.UUID,
    events: list[tuple[int, int, str, BaseModel]],
) -> None:
    """Send `(attempt, seq, type, payload)` run events to the events topic, as a worker would."""
    producer = make_producer(stack.settings.kafka)
    await producer.start()
    try:
        for attempt, seq, event_type, payload in events:
            event = EVENT_TYPES[event_type](
                run_id=run_id,
                attempt=attempt,
                seq=seq,
                ts=datetime.now(UTC),
                service="test",
                worker="w",
                tenant=tenant,
                category="test",
                payload=payload,
            )
            topic = Topics(stack.settings.topic_prefix).events
            await producer.send_and_wait(topic, encode(event), key=str(run_id).encode())
    finally:
        await producer.stop()


STARTED = StartedPayload(plugin="testkit", plugin_version="1.0.0", action="echo", params={})


async def test_a_retried_run_says_attempt_2_after_worker_lost(
    page: Page, api: Api, stack: GatewayHandle
) -> None:
    # Attempt 1 started and its worker died (no terminal event); attempt 2 ran to the end.
    run_id = uuid.uuid4()
    events: list[tuple[int, int, str, BaseModel]] = [
        (1, 1, "run.started", STARTED),
        (2, 1, "run.started", STARTED),
        (2, 2, "run.succeeded", SucceededPayload(result={})),
    ]
    await publish(stack, api.tenant, run_id, events)
    await api.wait_state(str(run_id), "succeeded")
    await sign_in(page, api.token, f"/#/runs/{run_id}")
    await expect(page.locator("#run-state")).to_have_text("succeeded")
    await expect(page.locator(".facts")).to_contain_text("2 after worker lost")


async def test_metric_charts_overlay_categories_and_append_live_points(
    page: Page, api: Api, stack: GatewayHandle
) -> None:
    """Train and validation loss share one chart; points reported while the page is open are
    appended from the run's stream (no GET .../metrics at all); hovering shows the values."""
    run_id = uuid.uuid4()
    seq = 1  # run.started

    def epoch(step: int, train: float, validation: float) -> list[tuple[int, int, str, BaseModel]]:
        nonlocal seq
        seq += 2
        values = {"loss": train, "accuracy": 0.5 + step / 10}
        return [
            (1, seq - 1, "run.metric", MetricPayload(category="train", values=values, step=step)),
            (
                1,
                seq,
                "run.metric",
                MetricPayload(category="validation", values={"loss": validation}, step=step),
            ),
        ]

    await publish(stack, api.tenant, run_id, [(1, 1, "run.started", STARTED), *epoch(1, 1.0, 1.2)])
    await api.wait_state(str(run_id), "running")
    metric_calls: list[str] = []
    page.on("request", lambda r: metric_calls.append(r.url) if r.url.endswith("/metrics") else None)
    await sign_in(page, api.token, f"/#/runs/{run_id}")

    loss = page.locator("figure.chart[data-name='loss']")
    await expect(loss).to_have_attribute("data-categories", "train validation")
    await expect(page.locator("figure.chart[data-name='accuracy']")).to_have_attribute(
        "data-categories", "train"
    )
    train = loss.locator(".series[data-category='train']")
    validation = loss.locator(".series[data-category='validation']")
    await expect(validation).to_have_attribute("data-points", "1")

    await publish(stack, api.tenant, run_id, [*epoch(2, 0.8, 0.9), *epoch(3, 0.6, 0.7)])
    await expect(train).to_have_attribute("data-points", "3")
    await expect(validation).to_have_attribute("data-points", "3")
    await expect(train).to_contain_text("latest 0.6")
    await expect(validation).to_contain_text("latest 0.7")
    await expect(loss.locator(".plot")).to_have_attribute(
        "aria-label", "loss by step: train 3 points, last 0.6; validation 3 points, last 0.7"
    )

    # Hover the last step: the legend shows every series' value there.
    over = loss.locator(".u-over")
    box = await over.bounding_box()
    assert box is not None
    await page.mouse.move(box["x"] + box["width"] - 1, box["y"] + box["height"] / 2)
    legend = loss.locator(".u-legend .u-series")
    await expect(legend.nth(0).locator(".u-value")).to_have_text("3")  # the step
    await expect(legend.nth(1)).to_contain_text("train")
    await expect(legend.nth(1).locator(".u-value")).to_have_text("0.6")
    await expect(legend.nth(2)).to_contain_text("validation")
    await expect(legend.nth(2).locator(".u-value")).to_have_text("0.7")

    seq += 1
    await publish(
        stack, api.tenant, run_id, [(1, seq, "run.succeeded", SucceededPayload(result={}))]
    )
    await expect(page.locator("#run-state")).to_have_text("succeeded")
    await expect(train).to_have_attribute("data-points", "3")
    assert metric_calls == []


async def test_a_charts_y_axis_is_named_and_wide_enough_for_its_labels(
    page: Page, api: Api, stack: GatewayHandle
) -> None:
    run_id = uuid.uuid4()
    events: list[tuple[int, int, str, BaseModel]] = [(1, 1, "run.started", STARTED)]
    for step in range(1, 4):  # values whose tick labels are long: 1,200,000 and so on
        tokens = MetricPayload(category="train", values={"tokens": step * 1_200_000}, step=step)
        events.append((1, step + 1, "run.metric", tokens))
    await publish(stack, api.tenant, run_id, events)
    await api.wait_state(str(run_id), "running")
    await sign_in(page, api.token, f"/#/runs/{run_id}")
    chart = page.locator("figure.chart[data-name='tokens']")
    await expect(chart.locator(".series[data-category='train']")).to_have_attribute(
        "data-points", "3"
    )
    # The plot area starts right of the widest tick label (uPlot's fixed 56 px clipped it).
    plot_left = await chart.locator(".u-over").evaluate("element => element.offsetLeft")
    widest = await page.evaluate(
        """() => {
          const context = document.createElement("canvas").getContext("2d");
          context.font = "11px system-ui, sans-serif";
          return context.measureText((3_600_000).toLocaleString()).width;
        }"""
    )
    assert plot_left > widest + 18, (plot_left, widest)  # and room for the axis's name


async def test_a_metric_reported_once_is_a_value_not_a_one_point_chart(
    page: Page, api: Api, stack: GatewayHandle
) -> None:
    run_id = uuid.uuid4()
    score = MetricPayload(category="test", values={"macro_f1": 0.912})
    events = [(1, 1, "run.started", STARTED), (1, 2, "run.metric", score)]
    await publish(stack, api.tenant, run_id, events)
    await api.wait_state(str(run_id), "running")
    await sign_in(page, api.token, f"/#/runs/{run_id}")

    figure = page.locator("figure.chart[data-name='macro_f1']")
    await expect(figure).to_have_class(re.compile(r"\bscalar\b"))
    await expect(figure.locator(".scalar-value[data-category='test']")).to_have_text("test 0.912")
    await expect(figure.locator("canvas")).to_have_count(0)
    # A second report makes it a chart.
    again = MetricPayload(category="test", values={"macro_f1": 0.95}, step=2)
    await publish(stack, api.tenant, run_id, [(1, 3, "run.metric", again)])
    await expect(figure.locator("canvas").first).to_be_attached()
    await expect(figure).not_to_have_class(re.compile(r"\bscalar\b"))


async def test_the_stream_reader_and_the_metric_series_modules(page: Page) -> None:
    """The SSE parser and the chart data, imported as the page imports them."""
    await page.goto("/")
    parsed = await page.evaluate(
        r"""async () => {
            const { SseParser } = await import("/dashboard/sse.js");
            const parser = new SseParser();
            const first = parser.feed("retry: 500\n\nid: 5\nevent: run.log\ndata: {\"a\":");
            const second = parser.feed("1}\n\n: heartbeat\n\nid: 6\r\ndata: not json\r\n\r\n");
            return { first, second, lastId: parser.lastId, retryMs: parser.retryMs };
        }"""
    )
    assert parsed == {
        "first": [],
        "second": [{"id": "5", "event": "run.log", "data": {"a": 1}}],
        "lastId": "6",  # a message that is not JSON is skipped, its id still counts
        "retryMs": 500,
    }
    charts = await page.evaluate(
        """async () => {
            const { MetricCharts } = await import("/dashboard/views/run/metric-series.js");
            const charts = new MetricCharts();
            let id = 0;
            const add = (category, step, loss, attempt = 1) =>
                charts.add(++id, { attempt, payload: { category, step, values: { loss } } });
            add("train", 1, 1.0);
            add("validation", 1, 1.2);
            add("train", 2, 0.8);
            add("validation", 0, 2.0); // out of order
            const stale = charts.add(id, { attempt: 1, payload: { values: { loss: 9 } } }).size;
            const loss = charts.charts.get("loss");
            const before = { xs: [...loss.xs], ys: loss.ys.map((y) => [...y]) };
            add("train", 1, 0.5, 2); // a retry starts the train series again
            const retried = { xs: [...loss.xs], ys: loss.ys.map((y) => [...y]) };
            add("train", null, 0.4, 2); // no step: x becomes the report number
            return { before, stale, retried, xLabel: loss.xLabel, xs: loss.xs, ys: loss.ys };
        }"""
    )
    assert charts["before"] == {"xs": [0, 1, 2], "ys": [[None, 1.0, 0.8], [2.0, 1.2, None]]}
    assert charts["stale"] == 0  # an event id seen before changes nothing
    assert charts["retried"] == {"xs": [0, 1], "ys": [[None, 0.5], [2.0, 1.2]]}
    assert charts["xLabel"] == "report"
    assert charts["xs"] == [1, 2]
    assert charts["ys"] == [[0.5, 0.4], [1.2, 2.0]]
