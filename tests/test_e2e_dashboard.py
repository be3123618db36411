"""The web dashboard in a real browser (headless Chromium from Debian, driven by Playwright)
against the real farm: API, worker, Docker engine, registry, Redis and S3."""

from __future__ import annotations

import os
import re
import signal
import uuid
from pathlib import Path

import httpx
import msgspec
import pytest

from common.contract import BuildTimings, Delivery
from common.models import Build, json_text, utc_now
from common.records import fields, keys
from common.tokens import create_token
from tests.conftest import ROOT, missing, start_worker, unique_subdomain, wait_until
from tests.farm import (
    FAST_HEARTBEAT,
    archive_deployment,
    archived_log,
    build_in_its_run_step,
    build_path,
    context_archive,
    create_archive_deployment,
    deploy,
    dockerfile,
    logs,
    wait_for_status,
    worker_ids,
)

try:
    from playwright.sync_api import expect, sync_playwright
except ImportError:  # reported by the browser fixture (a failure in CI)
    expect = sync_playwright = None

pytestmark = pytest.mark.e2e

CHROMIUM = os.environ.get("BUILDFARM_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
# Screenshots go to .local/ (ignored by git); SCREENSHOTS=docs/screenshots refreshes the
# committed ones that README shows.
SCREENSHOTS = ROOT / os.environ.get("SCREENSHOTS", ".local/screenshots")
TOKEN_KEY = "buildfarm.token"
GIT_URL = "http://127.0.0.1:9/docs.git"


@pytest.fixture(scope="module")
def browser():
    """One Chromium for the whole module (the machine is small); a fresh context per test."""
    if sync_playwright is None:
        missing("Playwright (pip install playwright)")
    if not Path(CHROMIUM).exists():
        missing(f"Chromium at {CHROMIUM} (apt-get install chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, api_url):
    """A page in a fresh browser context; fails the test on a script error or a CSP violation."""
    expect.set_options(timeout=15_000)
    context = browser.new_context(base_url=api_url, viewport={"width": 1200, "height": 800})
    page = context.new_page()
    problems = []
    page.on("pageerror", lambda error: problems.append(f"script error: {error}"))
    page.on(
        "console",
        lambda m: m.type == "error" and "Content Security Policy" in m.text and problems.append(m.text),
    )
    yield page
    context.close()
    assert not problems, problems


def sign_in(page, token: str) -> None:
    page.goto("/")
    page.get_by_label("API token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Deployments", level=1)).to_be_visible()


def screenshot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"))


def test_the_dashboard_is_served_at_the_root_without_a_token_under_a_strict_policy(api_url):
    page = httpx.get(f"{api_url}/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<script type="module" src="/static/app.js">' in page.text
    policy = page.headers["content-security-policy"]
    assert "script-src 'self';" in policy and "default-src 'none'" in policy
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    host = api_url.removeprefix("http://")
    assert f"connect-src 'self' ws://{host} wss://{host};" in policy
    script = httpx.get(f"{api_url}/static/app.js")
    assert script.status_code == 200 and script.headers["content-type"].startswith("text/javascript")
    assert "content-security-policy" in script.headers
    for missing_file in ("/static/nope.js", "/static/..%2Fapp.py", "/static/__init__.py"):
        response = httpx.get(f"{api_url}{missing_file}")
        assert response.status_code == 404 and response.json()["error"] == "not_found", missing_file


def test_a_wrong_token_gets_a_clear_message_and_a_right_one_signs_in_this_tab_only(page, tenant_token):
    requests = []
    page.on("request", lambda request: requests.append(request.url))
    page.goto("/")
    # A wrong token, typed and sent with the keyboard alone
    page.get_by_label("API token").fill("bf_not-a-real-token")
    page.keyboard.press("Enter")
    expect(page.get_by_role("alert")).to_have_text(
        "This token was not accepted: it is wrong or has been revoked."
    )
    assert page.evaluate(f"sessionStorage.getItem('{TOKEN_KEY}')") is None

    page.get_by_label("API token").fill(tenant_token[1])
    page.keyboard.press("Enter")
    heading = page.get_by_role("heading", name="Deployments", level=1)
    expect(heading).to_be_visible()
    expect(heading).to_be_focused()
    # The token is kept in this tab's sessionStorage, never in a URL or a cookie
    assert page.evaluate(f"sessionStorage.getItem('{TOKEN_KEY}')") == tenant_token[1]
    assert page.context.cookies() == [] and page.evaluate("document.cookie") == ""
    assert requests and not [url for url in requests if tenant_token[1] in url]
    # ...so another tab is not signed in
    other = page.context.new_page()
    other.goto("/")
    expect(other.get_by_role("heading", name="Sign in")).to_be_visible()
    other.close()

    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    assert page.evaluate("sessionStorage.length") == 0


def build_page_url(build: dict) -> str:
    return f"/#{build_path(build)}"


def log_lines(page) -> list[str]:
    return page.locator("pre.log").text_content().splitlines()


def line(text: str) -> re.Pattern:
    """A whole log line (the `[n/m] RUN …` line that printed it also contains it)."""
    return re.compile(rf"^{re.escape(text)}$", re.MULTILINE)


def status_badge(page):
    return page.locator(".title .badge")


def test_an_archive_deployment_created_in_the_browser_uploads_deploys_and_shows_its_log_live(
    page, client, tenant_token, worker
):
    # Given a source archive of 2 MiB whose build prints one line, waits, prints another
    archive = context_archive(
        dockerfile("echo live-line-one && sleep 4 && echo live-line-two"),
        {"padding.bin": os.urandom(2 << 20)},
    )
    client.post(
        "/deployments", json={"name": "docs", "subdomain": unique_subdomain("docs"), "repo_url": GIT_URL}
    )
    sign_in(page, tenant_token[1])
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])

    # When the form creates an archive deployment with it, uploads it (throttled, so that the
    # progress bar is seen moving) and deploys it
    form = page.get_by_role("form", name="New deployment")
    form.get_by_role("radio", name="archive").check()
    form.get_by_label("Name", exact=True).fill("shop")
    subdomain = unique_subdomain("shop")
    form.get_by_label("Subdomain").fill(subdomain)
    form.get_by_label("Source archive").set_input_files(
        files=[{"name": "shop.tar.gz", "mimeType": "application/gzip", "buffer": archive}]
    )
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send(
        "Network.emulateNetworkConditions",
        {"offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": 1 << 20},
    )
    form.get_by_role("button", name="Create deployment").click()
    progress = form.get_by_role("progressbar", name="Upload progress")
    expect(progress).to_be_visible()
    page.wait_for_function(
        "() => { const bar = document.querySelector('progress'); return bar?.value > 0 && bar.value < 100; }"
    )
    cdp.send(
        "Network.emulateNetworkConditions",
        {"offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1},
    )

    # Then the build's page opens and shows the log live: the first line while the build
    # still runs and before the second was printed
    page.wait_for_url(re.compile(r"#/deployments/[0-9a-f-]{36}/builds/[0-9a-f-]{36}$"), timeout=30_000)
    deployment_id, build_id = re.findall(r"[0-9a-f-]{36}", page.url)
    build = {"id": build_id, "deployment_id": deployment_id}
    log = page.locator("pre.log")
    expect(log).to_have_text(line("live-line-one"), timeout=120_000)
    assert "live-line-two" not in log_lines(page)
    expect(status_badge(page)).to_have_text("building")
    expect(log).to_have_text(line("live-line-two"))
    # ...then success, with the whole log as the API has it
    expect(status_badge(page)).to_have_text("success", timeout=120_000)
    expect(page.locator(".log-state")).to_have_text("The build ended: this is its whole log")
    text = logs(client, build)
    assert log.text_content() == text and "Pushing " in text
    finished = client.get(build_path(build)).json()
    expect(page.locator(".facts .tag code")).to_have_text(finished["image_tag"])
    screenshot(page, "build")
    # ...and the raw log downloads as the API serves it
    with page.expect_download() as download:
        page.get_by_role("button", name="Download raw log").click()
    assert Path(download.value.path()).read_text() == text

    # The builds page lists it with its short commit, image tag and a copy button
    page.get_by_role("link", name=re.compile("builds$")).click()
    expect(page.get_by_role("heading", name="shop", level=1)).to_be_visible()
    # ...and deploys the same upload again
    page.get_by_role("button", name="Deploy the last upload").click()
    page.wait_for_url(re.compile(r"/builds/(?!" + build_id + r")[0-9a-f-]{36}$"))
    expect(page.get_by_role("heading", name="Build #2")).to_be_visible()
    expect(status_badge(page)).to_have_text("success", timeout=120_000)
    page.go_back()
    expect(page.locator("tbody tr .badge")).to_have_text(["success", "success"])
    row = page.locator("tbody tr", has_text="#1")
    expect(row.locator(".badge")).to_have_text("success")
    expect(row.locator("td[data-label=Commit]")).to_have_text(finished["commit_sha"][:8])
    expect(row.locator("td[data-label=Image] code")).to_have_text(finished["image_tag"])
    screenshot(page, "builds")
    row.get_by_role("button", name="Copy the image tag of build 1").click()
    expect(row.get_by_role("button", name="Copy the image tag of build 1")).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == finished["image_tag"]

    # The deployments page shows its status and its last build
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Deployments").click()
    # Scoped to the deployments table: until the page changes, the builds table (whose image
    # tags carry the subdomain too) is still there.
    row = page.locator("section[aria-label=Deployments] tbody tr", has_text=subdomain)
    expect(row.locator("td[data-label=Status] .badge")).to_have_text("success")
    expect(row.locator("td[data-label='Last build']")).to_have_text(re.compile(r"^#2 finished \d+ s ago$"))
    expect(row.locator("td[data-label=Source]")).to_have_text(
        re.compile(r"^archive · [0-9a-f]{8} · 2\.0 MiB$")
    )
    expect(page.locator("tbody tr")).to_have_count(2)
    screenshot(page, "deployments")


def test_a_slow_build_cancelled_from_its_page_turns_cancelled(page, client, tenant_token, worker):
    deployment = archive_deployment(client, context_archive(dockerfile("echo started && sleep 30")))
    build = deploy(client, deployment)
    sign_in(page, tenant_token[1])
    page.goto(build_page_url(build))
    expect(page.locator("pre.log")).to_have_text(line("started"), timeout=120_000)
    expect(status_badge(page)).to_have_text("building")

    page.get_by_role("button", name="Cancel build").click()

    expect(status_badge(page)).to_have_text("cancelled", timeout=30_000)
    expect(page.get_by_role("button", name=re.compile("Cancel"))).to_be_hidden()
    expect(page.locator(".error-text")).to_contain_text("cancelled by tests")
    expect(fact(page, "Error kind")).to_have_text(
        "cancelled — cancelled by a user, or superseded by a newer deploy"
    )
    assert client.get(build_path(build)).json()["status"] == "cancelled"

    # ...and Retry builds the same source again as a new build
    page.get_by_role("button", name="Retry").click()
    expect(page.get_by_role("heading", name="Build #2")).to_be_visible()
    again = {"id": page.url.rsplit("/", 1)[1], "deployment_id": deployment["id"]}
    try:
        assert client.get(build_path(again)).json()["commit_sha"] == build["commit_sha"]
        expect(status_badge(page)).to_have_text(re.compile("^(pending|building)$"))
    finally:
        client.post(build_path(again) + "/cancel")


def test_the_builds_page_pages_newest_first_and_updates_without_reloading(page, client, tenant_token, worker):
    # Given a deployment whose first build runs, so that its next 20 wait in the queue
    deployment = archive_deployment(client, context_archive(dockerfile("echo started && sleep 30")))
    first = deploy(client, deployment)
    wait_for_status(client, first, ("building",))
    queued = [deploy(client, deployment) for _ in range(20)]
    try:
        sign_in(page, tenant_token[1])
        page.goto(f"/#/deployments/{deployment['id']}")
        rows = page.locator("tbody tr")
        expect(rows).to_have_count(20)
        expect(rows.locator("td[data-label=Build]")).to_have_text([f"#{n}" for n in range(21, 1, -1)])
        expect(rows.locator(".badge")).to_have_text(["pending"] * 20)

        # When a build changes, the page shows it without being reloaded
        page.evaluate("window.__notReloaded = true")
        client.post(build_path(queued[-1]) + "/cancel")
        expect(rows.first.locator(".badge")).to_have_text("cancelled")
        assert page.evaluate("window.__notReloaded") is True

        # The next page holds the oldest build, still running
        page.get_by_role("link", name="Older →").click()
        expect(rows).to_have_count(1)
        expect(rows.first.locator("td[data-label=Build]")).to_have_text("#1")
        expect(rows.first.locator(".badge")).to_have_text("building")
        page.get_by_role("link", name="← Newest").click()
        expect(rows).to_have_count(20)
    finally:
        for build in [*queued, first]:
            client.post(build_path(build) + "/cancel")


def test_a_log_line_with_html_is_shown_as_text_and_never_run_and_long_lines_wrap(
    page, client, tenant_token, worker
):
    html = "<script>window.__pwned=1</script><b>bold</b><img src=x onerror=window.__pwned=2>"
    long_line = "x" * 800
    deployment = archive_deployment(
        client, context_archive(dockerfile(f"echo {long_line}", "sleep 3", f"echo '{html}' && exit 3"))
    )
    sign_in(page, tenant_token[1])
    build = deploy(client, deployment)
    page.goto(build_page_url(build))
    log = page.locator("pre.log")

    def shown_as_text() -> None:
        expect(log).to_have_text(line(html))
        expect(log).to_have_text(line(long_line))
        assert page.evaluate("window.__pwned") is None
        assert page.locator("main b, main img, main script").count() == 0
        # ...and the long line wraps inside the log instead of widening it
        assert log.evaluate("pre => pre.scrollWidth <= pre.clientWidth")

    # Live, over the WebSocket
    expect(page.locator(".log-state")).to_have_text(re.compile("^Live"))
    expect(log).to_have_text(line(html), timeout=120_000)
    shown_as_text()
    expect(status_badge(page)).to_have_text("failed", timeout=60_000)
    expect(page.locator(".error-text")).to_contain_text(html)
    # ...and stored, once the build ended
    page.reload()
    expect(page.locator(".log-state")).to_have_text("The build ended: this is its whole log")
    shown_as_text()
    expect(page.locator(".error-text")).to_contain_text(html)


def test_on_a_narrow_screen_every_page_fits_its_width(page, client, tenant_token, worker):
    deployment = archive_deployment(client, context_archive(dockerfile("echo " + "y" * 500)))
    build = wait_for_status(client, deploy(client, deployment))
    page.set_viewport_size({"width": 360, "height": 740})
    sign_in(page, tenant_token[1])
    for url, ready in [
        ("/#/deployments", page.locator("tbody tr")),
        (f"/#/deployments/{deployment['id']}", page.locator("tbody tr")),
        (build_page_url(build), page.locator(".log-state", has_text="whole log")),
        ("/#/farm", page.locator("section[aria-labelledby=workers-title] tbody tr").first),
    ]:
        page.goto(url)
        expect(ready).to_be_visible()
        assert page.evaluate("document.documentElement.scrollWidth") <= 360, url


def test_the_live_log_resumes_after_a_dropped_connection_without_a_gap_or_a_repeat(
    page, client, tenant_token, worker
):
    ticks = "for i in $(seq 1 40); do echo tick-$i; sleep 0.1; done"
    deployment = archive_deployment(client, context_archive(dockerfile(ticks)))
    urls = []

    def drop_the_first_connection_after_five_lines(ws) -> None:
        urls.append(ws.url)
        server = ws.connect_to_server()
        if len(urls) > 1:
            return  # later connections pass through
        sent = []

        def forward(message) -> None:
            if len(sent) < 5:
                sent.append(message)
                ws.send(message)
                if len(sent) == 5:
                    ws.close(code=4000, reason="dropped by the test")
                    server.close()

        server.on_message(forward)

    page.route_web_socket(re.compile(r"/logs/stream"), drop_the_first_connection_after_five_lines)
    sign_in(page, tenant_token[1])
    build = deploy(client, deployment)
    page.goto(build_page_url(build))

    expect(status_badge(page)).to_have_text("success", timeout=120_000)
    expect(page.locator(".log-state")).to_have_text("The build ended: this is its whole log", timeout=30_000)
    assert len(urls) == 2 and urls[1].endswith("/logs/stream?after=5"), urls
    assert page.locator("pre.log").text_content() == logs(client, build)


def fact(page, term: str):
    """The value of a page's fact named `term` (a <dd> of the .facts lists)."""
    return page.locator(f'.facts > div:has(> dt:text-is("{term}")) > dd')


def timings_text(**values: float) -> str:
    """A build record's timings field as the worker writes it (contract.BuildTimings as JSON)."""
    return json_text(msgspec.to_builtins(BuildTimings(**values)))


def test_build_args_no_cache_and_phase_timings_are_shown_as_they_come_and_only_as_text(
    page, client, redis_client, tenant_token
):
    # Given a deployment and a building build whose args and no_cache are written straight into
    # their Redis hashes, and later their timings: what is tested is the rendering of the public
    # records, whoever fills them (the API stores the args, the worker times the phases), so no
    # worker runs here. One value is HTML that would run if it were parsed.
    injection = "<img src=x onerror=window.__pwned=1>"
    long_value = "v" * 300
    deployment = create_archive_deployment(client)
    deployment_args = json_text({"GREETING": injection, "MODE": "production"})
    redis_client.hset(keys.deployment(deployment["id"]), fields.BUILD_ARGS, deployment_args)
    build = Build(
        id=str(uuid.uuid4()),
        deployment_id=deployment["id"],
        tenant=tenant_token[0],
        number=1,
        status="building",
        subdomain=deployment["subdomain"],
        source_type="archive",
        dockerfile_path="Dockerfile",
        created_at=utc_now(),
        started_at=utc_now(),
        attempt=1,
        worker="test:1",
        build_args=json_text({"GREETING": injection, "LONG": long_value, "MODE": "staging"}),
        no_cache=True,
    )
    key = keys.build(build.id)
    redis_client.hset(key, mapping=build.to_redis())
    try:
        sign_in(page, tenant_token[1])
        # The deployment's page lists its build args
        page.goto(f"/#/deployments/{deployment['id']}")
        expect(fact(page, "Build args").locator("li")).to_have_text(
            [f"GREETING={injection}", "MODE=production"]
        )

        # The build's page shows its own args and that it uses no cache; no phases yet
        page.goto(build_page_url({"id": build.id, "deployment_id": deployment["id"]}))
        expect(fact(page, "Build args").locator("li")).to_have_text(
            [f"GREETING={injection}", f"LONG={long_value}", "MODE=staging"]
        )
        expect(fact(page, "Cache")).to_have_text("not used (no_cache): every step runs again")
        expect(fact(page, "Phases")).to_have_count(0)

        # When the worker has timed the first phases, the page shows those, without a reload
        page.evaluate("window.__notReloaded = true")
        redis_client.hset(key, fields.TIMINGS, timings_text(queued_s=0.4, source_s=0.2))
        expect(fact(page, "Phases")).to_have_text("queued 0.4 s · source 0.2 s")
        # ...then all of them once the build ended
        timings = timings_text(
            queued_s=0.4, source_s=0.2, build_s=12.34, push_s=75.2, steps=7, cached_steps=5
        )
        redis_client.hset(
            key, mapping={fields.TIMINGS: timings, fields.STATUS: "success", fields.FINISHED_AT: utc_now()}
        )
        expect(status_badge(page)).to_have_text("success")
        expect(fact(page, "Phases")).to_have_text(
            "queued 0.4 s · source 0.2 s · build 12.3 s · push 1 min 15 s · 7 steps, 5 cached"
        )
        expect(fact(page, "Phases").locator(".phase-bar > span")).to_have_count(4)
        assert page.evaluate("window.__notReloaded") is True

        # The HTML in a value was shown as text on both pages, never parsed
        assert page.evaluate("window.__pwned") is None
        assert page.locator("main img").count() == 0
        screenshot(page, "build-timings")
        # ...and a long value wraps within a narrow screen
        page.set_viewport_size({"width": 360, "height": 740})
        assert page.evaluate("document.documentElement.scrollWidth") <= 360
    finally:
        redis_client.delete(key)


def test_the_deployment_page_charts_its_builds_one_linked_bar_each(page, client, tenant_token, worker):
    # Given a deployment whose builds ended as success, success and cancelled (queued behind)
    deployment = archive_deployment(client, context_archive(dockerfile("echo charted")))
    built = [deploy(client, deployment) for _ in range(3)]
    client.post(build_path(built[2]) + "/cancel")
    outcomes = [wait_for_status(client, build)["status"] for build in built]
    assert outcomes == ["success", "success", "cancelled"]

    # When its page opens
    sign_in(page, tenant_token[1])
    page.goto(f"/#/deployments/{deployment['id']}")

    # Then the chart has one bar per build, oldest first, coloured by outcome, each a link to it
    bars = page.locator("svg.history a")
    expect(bars).to_have_count(3)
    assert [bars.nth(i).get_attribute("href") for i in range(3)] == [f"#{build_path(b)}" for b in built]
    rects = page.locator("svg.history rect")
    assert [rects.nth(i).get_attribute("class") for i in range(3)] == [f"bar-{o}" for o in outcomes]
    expect(bars.nth(2)).to_have_attribute("aria-label", re.compile(r"^Build #3: cancelled"))
    screenshot(page, "history")
    bars.nth(0).click()
    expect(page.get_by_role("heading", name="Build #1")).to_be_visible()


def farm_row(page, worker_id: str):
    return page.locator("section[aria-labelledby=workers-title] tbody tr", has_text=worker_id)


def test_the_farm_page_lists_the_worker_and_shows_a_running_build_to_an_admin_only(
    page, client, tenant_token, worker, redis_client
):
    [worker_id] = worker_ids(worker)
    build = build_in_its_run_step(client, "echo in-a-slot && sleep 60")
    try:
        # A tenant: the worker, its slot in use, and no build named
        sign_in(page, tenant_token[1])
        page.get_by_role("navigation", name="Main").get_by_role("link", name="Farm").click()
        expect(page.get_by_role("heading", name="Farm", level=1)).to_be_visible()
        row = farm_row(page, worker_id)
        expect(row.locator("td[data-label='In use']")).to_have_text("1 of 2")
        expect(row.locator("td[data-label=State]")).to_have_text("alive")
        expect(page.locator("td[data-label=Builds]")).to_have_count(0)
        assert build["id"] not in page.content()
        screenshot(page, "farm")

        # An admin: the build in the slot, linked to its page
        page.get_by_role("button", name="Sign out").click()
        sign_in(page, create_token(redis_client, tenant_token[0], "ops", admin=True))
        page.goto("/#/farm")
        link = farm_row(page, worker_id).locator("td[data-label=Builds] a")
        expect(link).to_have_text(f"#{build['number']}")
        expect(link).to_have_attribute("href", f"#{build_path(build)}")
        link.click()
        expect(page.get_by_role("heading", name=f"Build #{build['number']}")).to_be_visible()
    finally:
        client.post(build_path(build) + "/cancel")


def test_a_killed_worker_greys_out_on_the_farm_page_then_leaves_it(page, tenant_token, worker, logs_dir):
    killed = start_worker(logs_dir, name="farm-page", **FAST_HEARTBEAT)
    try:
        wait_until(lambda: "ready for action" in killed.tail(), 30, what="the worker to boot")
        [worker_id] = worker_ids(killed)
        sign_in(page, tenant_token[1])
        page.goto("/#/farm")
        row = farm_row(page, worker_id)
        expect(row.locator("td[data-label=State]")).to_have_text("alive")
        assert "stale" not in (row.get_attribute("class") or "")

        killed.stop(signal.SIGKILL)

        expect(row.locator("td[data-label=State]")).to_have_text("stale", timeout=10_000)
        expect(row).to_have_class("stale")
        assert row.evaluate("tr => getComputedStyle(tr.cells[0]).opacity") == "0.6"
        expect(row).to_have_count(0, timeout=10_000)
    finally:
        killed.stop()


def test_the_deployment_page_shows_its_integrations_and_their_last_delivery_only_as_text(
    page, client, redis_client, tenant_token
):
    # Given a git deployment reporting to GitLab, with a notification target whose URL holds
    # markup and whose last delivery got an answer with a script in it
    html_url = "https://example.com/<b>hook</b>"
    answer = "<script>window.__pwned=1</script>"
    deployment = client.post(
        "/deployments", json={"name": "hooks", "subdomain": unique_subdomain("int"), "repo_url": GIT_URL}
    ).json()
    path = f"/deployments/{deployment['id']}"
    plain = create_archive_deployment(client)
    status = {
        "provider": "gitlab",
        "token": "t",
        "api_url": "https://gitlab.example.com/api/v4",
        "repository": "acme/app",
    }
    assert client.put(f"{path}/commit-status", json=status).status_code == 200
    target = client.post(f"{path}/notifications", json={"url": html_url, "events": ["build.failed"]}).json()
    delivery = Delivery(
        event_id=str(uuid.uuid4()),
        event="build.failed",
        build_id=str(uuid.uuid4()),
        attempt=2,
        at=utc_now(),
        delivered=False,
        status_code=500,
        answer=answer,
        duration_ms=12,
    )
    redis_client.lpush(keys.notification_deliveries(target["id"]), msgspec.json.encode(delivery))

    # When its page is shown
    sign_in(page, tenant_token[1])
    page.goto(f"/#/deployments/{deployment['id']}")

    # Then the card says where statuses go and shows the target and its last delivery, as text
    card = page.locator("section.integrations")
    expect(card.locator(".reporting")).to_have_text(
        "Commit status: reported to GitLab · acme/app (https://gitlab.example.com/api/v4)"
    )
    row = card.locator("tbody tr")
    expect(row.locator("td[data-label=URL]")).to_have_text(html_url)
    expect(row.locator("td[data-label=Events]")).to_have_text("build.failed")
    expect(row.locator("td[data-label='Last delivery']")).to_contain_text(
        "answered 500 build.failed, attempt 2"
    )
    assert row.locator(".delivery").get_attribute("title") == answer
    assert page.locator("main b, main script").count() == 0 and page.evaluate("window.__pwned") is None

    # A deployment without integrations shows no such card
    page.goto(f"/#/deployments/{plain['id']}")
    expect(page.get_by_role("heading", name="Builds", exact=True)).to_be_visible()
    page.wait_for_timeout(500)
    expect(page.get_by_role("heading", name="Integrations")).to_be_hidden()


ESC = "\x1b"


def log_line(page, pattern: str):
    """The log's line (its element) whose text starts with `pattern` (a step's first line, which
    holds its command, starts with its `[n/m]`)."""
    return page.locator("pre.log .line", has_text=re.compile(f"^{pattern}"))


def in_view(page, locator) -> bool:
    """Whether the element is inside the log's visible part."""
    return locator.evaluate(
        """el => { const log = el.closest('pre.log').getBoundingClientRect();
                   const box = el.getBoundingClientRect();
                   return box.top >= log.top && box.bottom <= log.bottom && box.height > 0; }"""
    )


def test_a_coloured_log_reads_like_a_terminal_live_and_stored_with_lines_to_link_steps_to_fold_and_its_error(
    page, client, tenant_token, worker
):
    # Given a build whose steps print in colour, redraw a progress line with carriage returns,
    # wait, and fail with an error printed in red as apt prints it
    deployment = archive_deployment(
        client,
        context_archive(
            dockerfile(
                "printf '\\033[32mgreen-text\\033[0m and \\033[1mbold-text\\033[0m\\n'",
                "printf 'progress 10%%\\rprogress 50%%\\rprogress 100%%\\n'",
                "sleep 4",
                "printf '\\033[91mE: package-not-found\\033[0m\\n' && exit 3",
            )
        ),
    )
    sign_in(page, tenant_token[1])
    build = deploy(client, deployment)
    page.goto(build_page_url(build))
    log = page.locator("pre.log")

    def reads_like_a_terminal() -> None:
        green = log_line(page, "green-text")
        expect(green).to_have_text("green-text and bold-text\n")
        colour = green.locator("span", has_text="green-text").evaluate("el => getComputedStyle(el).color")
        assert colour == "rgb(139, 209, 124)"
        weight = green.locator("span", has_text="bold-text").evaluate("el => getComputedStyle(el).fontWeight")
        assert weight == "700"
        expect(log_line(page, "progress")).to_have_text("progress 100%\n")
        text = page.locator("main").text_content()
        assert ESC not in text and "\r" not in text
        assert [shown for shown in text.splitlines() if shown.startswith("progress")] == ["progress 100%"]
        # ...every line numbered, in order
        numbers = log.locator("a.ln").evaluate_all("links => links.map(a => Number(a.dataset.n))")
        assert numbers == list(range(1, len(numbers) + 1))

    # Live, over the WebSocket
    expect(log_line(page, "progress")).to_have_text("progress 100%\n", timeout=120_000)
    expect(status_badge(page)).to_have_text("building")
    reads_like_a_terminal()
    expect(status_badge(page)).to_have_text("failed", timeout=60_000)

    # ...and stored, once the build ended
    page.reload()
    expect(page.locator(".log-state")).to_have_text("The build ended: this is its whole log")
    reads_like_a_terminal()
    raw = logs(client, build)
    assert f"{ESC}[32mgreen-text{ESC}[0m" in raw

    # Each step's first line says whether it was cached or ran and how long it took, as the
    # build's timings count them
    heads = page.locator(".step-head .step-summary")
    summaries = heads.evaluate_all("els => els.map(el => el.dataset.summary)")
    assert summaries and all(re.fullmatch(r"cached|(ran|failed)( in \d+(\.\d+)? s)?", s) for s in summaries)
    assert summaries[-1].startswith("failed")
    timings = client.get(build_path(build)).json()["timings"] or {}
    if "steps" in timings:
        assert len(summaries) == timings["steps"]
        assert summaries.count("cached") == timings.get("cached_steps", 0)

    # Folding a step hides its lines; unfolding shows them again
    green = log_line(page, "green-text")
    step = page.locator(".step", has=page.locator(".line", has_text=re.compile("^green-text")))
    fold = step.locator("button.fold")
    screenshot(page, "build-log")
    fold.click()
    expect(green).to_be_hidden()
    expect(fold).to_have_attribute("aria-expanded", "false")
    expect(step.locator(".step-head")).to_be_visible()
    fold.press("Enter")
    expect(green).to_be_visible()

    # "Jump to first error" shows the red line
    page.get_by_role("button", name="Jump to first error").click()
    error = log_line(page, "E: package-not-found")
    expect(error).to_have_class(re.compile(r"\btarget\b"))
    assert in_view(page, error)

    # A line's number links to it: clicking it changes the address only (the view stays)...
    n = int(green.locator("a.ln").get_attribute("data-n"))
    log.evaluate("pre => pre.dataset.probe = 'same view'")
    green.locator("a.ln").click()
    assert page.url.endswith(f"{build_page_url(build)}#L{n}")
    assert log.evaluate("pre => pre.dataset.probe") == "same view"
    # ...and opening the link shows the page scrolled to that line, marked
    page.evaluate("document.querySelector('pre.log').scrollTop = 0")
    page.goto("/")
    page.goto(f"{build_page_url(build)}#L{n}")
    expect(green).to_have_class(re.compile(r"\btarget\b"))
    assert in_view(page, green)
    assert green.evaluate("el => el.classList.contains('target')")

    # The plain-text download strips the escapes, the raw one keeps them
    plain = client.get(build_path(build) + "/logs", params={"strip_ansi": "1"})
    assert plain.status_code == 200 and ESC not in plain.text
    assert "green-text and bold-text\n" in plain.text and plain.text.count("\n") == raw.count("\n")
    assert client.get(build_path(build) + "/logs", params={"strip_ansi": "0"}).text == raw
    bad = client.get(build_path(build) + "/logs", params={"strip_ansi": "maybe"})
    assert bad.status_code == 400 and bad.json()["error"] == "bad_request"
    with page.expect_download() as download:
        page.get_by_role("button", name="Download as plain text").click()
    assert Path(download.value.path()).read_bytes().decode() == plain.text


LONG_LOG_LINES = 100_000


def test_search_finds_a_line_in_a_100000_line_archived_log_while_the_tab_stays_responsive(
    page, client, redis_client, s3, config, tenant_token, worker
):
    # Given a build that printed 100,000 lines, its log archived (in four steps: BuildKit clips a
    # step's output at 2 MiB)
    quarter = LONG_LOG_LINES // 4
    steps = [f"seq {n + 1} {n + quarter} | sed 's/.*/row-&-end/'" for n in range(0, LONG_LOG_LINES, quarter)]
    deployment = archive_deployment(client, context_archive(dockerfile(*steps)))
    build = wait_for_status(client, deploy(client, deployment), timeout=600)
    assert build["status"] == "success", build
    total = archived_log(redis_client, s3, config, build, 60).count("\n")
    assert total > LONG_LOG_LINES
    # The page's long tasks (over 50 ms: the tab did not answer meanwhile), from its start
    page.add_init_script(
        """window.__longTasks = [];
           new PerformanceObserver((list) => {
             for (const entry of list.getEntries()) window.__longTasks.push(entry.duration);
           }).observe({ type: 'longtask', buffered: true });"""
    )
    sign_in(page, tenant_token[1])

    # When its page opens
    started = page.evaluate("performance.now()")
    page.evaluate(f"location.hash = '{build_page_url(build)[1:]}'")
    first = log_line(page, "row-1-end")
    expect(first).to_be_visible(timeout=60_000)
    first_paint = page.evaluate("performance.now()") - started
    expect(page.locator(".log-state")).to_have_text("The build ended: this is its whole log", timeout=60_000)
    whole = page.evaluate("performance.now()") - started
    expect(page.locator("pre.log a.ln")).to_have_count(total)

    # ...and a line near the end is searched for
    search = page.get_by_label("Search the log")
    # (timed in the page: from the input to the count of matches shown)
    page.evaluate(
        """() => { const count = document.querySelector('.match-count');
                   const input = document.querySelector('.log-search');
                   window.__searched = new Promise((resolve) => {
                     let typed;
                     const start = (event) => { if (event.target === input) typed ??= performance.now(); };
                     document.addEventListener('input', start, { capture: true });
                     new MutationObserver((_, observer) => {
                       if (count.textContent) { observer.disconnect(); resolve(performance.now() - typed); }
                     }).observe(count, { childList: true, characterData: true, subtree: true });
                   }); }"""
    )
    search.fill("row-99999-end")
    expect(page.locator(".match-count")).to_have_text("1 of 1")
    found = log_line(page, "row-99999-end")
    expect(found).to_have_class(re.compile(r"\btarget\b"))
    searched = page.evaluate("window.__searched")
    assert in_view(page, found)
    longest = max(page.evaluate("window.__longTasks"), default=0)
    print(
        f"\n{total} lines: first paint {first_paint:.0f} ms, whole log {whole:.0f} ms, "
        f"search result {searched:.0f} ms, longest task {longest:.0f} ms"
    )
    # Then the first screen came before the whole log was rendered, and no task held the tab long
    assert first_paint < whole
    assert longest < 1000, longest
    # ...a common word's matches are counted and stepped through
    search.fill("row-1")
    expect(page.locator(".match-count")).to_have_text("1 of 11112")
    page.get_by_role("button", name="Next match").click()
    expect(page.locator(".match-count")).to_have_text("2 of 11112")
    expect(log_line(page, "row-10-end")).to_have_class(re.compile(r"\btarget\b"))
    # ...Enter steps on, Shift+Enter back
    search.press("Enter")
    expect(log_line(page, "row-11-end")).to_have_class(re.compile(r"\btarget\b"))
    search.press("Shift+Enter")
    expect(page.locator(".match-count")).to_have_text("2 of 11112")
    screenshot(page, "build-log-search")
