"""The web console in headless chromium against a real labd and a real agent: sign-in and sign-out, a run page that
updates while the agent runs the suite and then shows the signed report with its charts, an admin draining a device
from the fleet page, a certifier who can neither see nor use the cancel button, and forms refused without their
CSRF token, and the fleet page without JavaScript at tablet width. The tests share one labd, one agent and one
browser, and run in file order."""

from __future__ import annotations

import io
import re
import zipfile
from pathlib import Path
from typing import Any

from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException, WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import Select, WebDriverWait

from pilotlab.v1 import common_pb2
from tests.e2e.conftest import labctl
from tests.web.conftest import LIVE_SUITE, Console, Http

WAIT_S = 60


def wait(driver: WebDriver, timeout: float = 15) -> WebDriverWait[WebDriver]:
    """Polls every 0.1 s; an element the live page swapped out meanwhile is looked up again, and a lookup that a
    navigation interrupted ("aborted by navigation": the page reloading when its run ends, slow on a loaded machine)
    is tried again; the wait still fails when the timeout passes."""
    return WebDriverWait(driver, timeout, poll_frequency=0.1,
                         ignored_exceptions=(NoSuchElementException, StaleElementReferenceException,
                                             WebDriverException))


def run_status(driver: WebDriver, expected: str) -> None:
    wait(driver).until(ec.text_to_be_present_in_element((By.CSS_SELECTOR, "#live .run-status .badge"), expected))


def sign_in(driver: WebDriver, c: Console, token: str) -> None:
    driver.get(c.base + "/login")
    field = wait(driver).until(ec.presence_of_element_located((By.ID, "token")))
    field.clear()
    field.send_keys(token)
    driver.find_element(By.CSS_SELECTOR, "#login button[type=submit]").click()
    wait(driver).until(ec.presence_of_element_located((By.ID, "signout")))


def sign_out(driver: WebDriver) -> None:
    driver.find_element(By.CSS_SELECTOR, "#signout button").click()
    wait(driver).until(ec.presence_of_element_located((By.ID, "login")))


def full_page(driver: WebDriver, path: Path) -> None:
    """A screenshot of the whole page at 1280 px wide, not only the window's first screen."""
    driver.execute_script("window.scrollTo(0, 0);")
    height = int(driver.execute_script("return document.documentElement.scrollHeight"))
    driver.set_window_size(1280, min(max(height, 900), 12000))
    try:
        driver.save_screenshot(str(path))
    finally:
        driver.set_window_size(1280, 900)


def flash(driver: WebDriver) -> str:
    return str(wait(driver).until(ec.presence_of_element_located((By.CSS_SELECTOR, ".flash"))).text)


def test_sign_in_and_sign_out(console: Console, browser: Any, shots: Path) -> None:
    d: WebDriver = browser
    d.get(console.base + "/devices")  # not signed in: sent to the sign-in form, and back after it
    wait(d).until(ec.presence_of_element_located((By.ID, "login")))
    assert "/login?next=" in d.current_url and d.current_url.endswith("devices"), d.current_url
    d.find_element(By.ID, "token").send_keys("plt_admin_not-a-real-token")
    d.find_element(By.CSS_SELECTOR, "#login button[type=submit]").click()
    assert "does not know this token" in d.find_element(By.ID, "login-error").text
    d.save_screenshot(str(shots / "login-refused.png"))

    sign_in(d, console, console.lab.admin_token)
    assert d.current_url.endswith("/devices")
    assert d.find_element(By.CSS_SELECTOR, ".role").text.lower() == "admin"
    cookie = d.get_cookie("pilotlab_session")
    assert cookie is not None and cookie["httpOnly"] and cookie["sameSite"] == "Strict", cookie
    sign_out(d)
    assert "You are signed out" in d.page_source
    d.get(console.base + "/runs")  # the old session is gone
    wait(d).until(ec.presence_of_element_located((By.ID, "login")))


def test_run_page_updates_live_then_shows_the_report(console: Console, browser: Any, shots: Path,
                                                     tmp_path: Path) -> None:
    d: WebDriver = browser
    sign_in(d, console, console.engineer)
    d.get(console.base + "/runs")
    d.find_element(By.NAME, "device").send_keys(console.device)
    d.find_element(By.CSS_SELECTOR, "#submit-form button[type=submit]").click()
    wait(d).until(ec.url_matches(r"/runs/run-[0-9a-f]+$"))
    run_id = d.current_url.rsplit("/", 1)[1]
    assert "submitted" in flash(d)
    d.execute_script("window.__sameDocument = true;")  # gone if the page reloads

    seen: list[str] = []

    def timed_phase(drv: WebDriver) -> bool:
        """True once the page shows the timed run (it lasts the suite's min_duration_ms, 2.5 s); notes each phase."""
        rows = drv.find_elements(By.CSS_SELECTOR, "#tasks tbody tr[data-status=running]")
        phase = (rows[0].get_attribute("data-phase") or "") if rows else ""
        if phase and (not seen or seen[-1] != phase):
            seen.append(phase)
        return phase == "performance"

    wait(d, WAIT_S).until(timed_phase)
    assert d.execute_script("return window.__sameDocument === true;"), "the page reloaded instead of updating"
    assert d.find_element(By.ID, "live").get_attribute("data-mode") == "sse"
    assert d.find_elements(By.ID, "cancel"), "an engineer sees the cancel button of a running run"
    d.save_screenshot(str(shots / "run-live.png"))
    print(f"run {run_id}: the page showed the phases {seen} while running, without reloading")

    frame = wait(d, WAIT_S).until(ec.presence_of_element_located((By.ID, "report-frame")))  # reloaded once ended
    run_status(d, "completed")
    assert not d.find_elements(By.ID, "cancel")
    d.execute_script("arguments[0].scrollIntoView();", frame)
    d.switch_to.frame(frame)
    chart = wait(d, 30).until(ec.presence_of_element_located((By.CSS_SELECTOR, "svg.chart")))
    assert chart.find_elements(By.TAG_NAME, "polyline"), "the latency CDF has no curve"
    d.execute_script("arguments[0].scrollIntoView();", chart)
    assert chart.is_displayed() and chart.size["width"] > 200, chart.size
    chart.screenshot(str(shots / "report-chart.png"))
    d.switch_to.default_content()
    wait(d).until(lambda drv: frame.size["height"] > 1200)  # fitted to the report by the page's script
    full_page(d, shots / "run-finished.png")

    # The signed bundle: the same files, byte for byte, as `labctl report pull` writes.
    http = Http(console.base)
    http.sign_in(console.engineer)
    with http.opener.open(console.base + f"/runs/{run_id}/bundle.zip", timeout=30) as r:
        assert r.status == 200 and r.headers["Content-Type"] == "application/zip", r.headers
        body = r.read()
    with zipfile.ZipFile(io.BytesIO(body)) as z:
        files = {n: z.read(n) for n in z.namelist()}
    assert {"report.json", "report.html", "attestation.dsse.json"} <= set(files)
    out = tmp_path / "pulled"
    p = labctl(console.lab, console.engineer, "report", "pull", run_id, "--out", str(out))
    assert p.returncode == 0, p.stderr
    pulled = {str(f.relative_to(out)): f.read_bytes() for f in out.rglob("*") if f.is_file()}
    assert pulled == files
    sign_out(d)


def test_admin_drains_a_device_from_the_fleet_page(console: Console, browser: Any, shots: Path) -> None:
    d: WebDriver = browser
    sign_in(d, console, console.lab.admin_token)
    d.get(console.base + "/devices")
    row = d.find_element(By.ID, f"dev-{console.device}")
    assert "x86_64" in row.text or "aarch64" in row.text, row.text  # the platform column
    row.find_element(By.CSS_SELECTOR, f"button[value='{console.device} draining']").click()
    assert flash(d) == f"Device {console.device} is now draining."
    row = d.find_element(By.ID, f"dev-{console.device}")
    assert "draining" in row.text
    assert not row.find_elements(By.CSS_SELECTOR, f"button[value='{console.device} draining']")
    assert row.find_elements(By.CSS_SELECTOR, f"button[value='{console.device} active']")
    full_page(d, shots / "fleet.png")
    assert console.rpc.device(console.device).state == "draining"
    d.find_element(By.LINK_TEXT, console.device).click()  # the device's own page, with its state history
    wait(d).until(ec.text_to_be_present_in_element((By.CSS_SELECTOR, "main"), "device.drain"))
    full_page(d, shots / "device.png")
    d.get(console.base + "/suites")
    assert "Counts toward" in d.find_element(By.ID, f"suite-{LIVE_SUITE}").text
    full_page(d, shots / "suites.png")
    d.get(console.base + "/audit")
    first = d.find_element(By.CSS_SELECTOR, "#audit tbody tr")
    assert "device.drain" in first.text and console.device in first.text, first.text
    full_page(d, shots / "audit.png")
    sign_out(d)


def test_certifier_cannot_cancel(console: Console, browser: Any, shots: Path) -> None:
    """The run waits on the drained device; a certifier sees no cancel button, and the POST behind it, with the
    session's valid CSRF token, is refused 403. Its token, revoked, is signed out at once."""
    d: WebDriver = browser
    run = {"id": console.rpc("SubmitRun", console.engineer, suite_id=LIVE_SUITE, device=console.device).id}
    secret, token_id = console.rpc.token("certifier")
    sign_in(d, console, secret)
    d.get(f"{console.base}/runs/{run['id']}")
    run_status(d, "queued")
    assert not d.find_elements(By.ID, "cancel") and not d.find_elements(By.ID, "cancel-form")
    d.save_screenshot(str(shots / "run-certifier.png"))

    http = Http(console.base)
    csrf = http.sign_in(secret)
    status, body, _ = http.request(f"/runs/{run['id']}/cancel", {"csrf": csrf})
    assert status == 403, (status, body[-500:])
    assert "certifier token may not cancel runs" in body
    assert console.rpc("GetRun", id=run["id"]).status == common_pb2.STATUS_QUEUED

    # Revoked: the very next request of both sessions goes to sign-in.
    console.rpc("RevokeToken", id=token_id)
    status, _, headers = http.request("/devices")
    # (why=token for the first request that finds the token refused; why=ended for the token's other sessions,
    # which that request ended: the browser's live stream may have been first.)
    assert status == 303 and re.search(r"^/login\?.*why=(token|ended)", headers["Location"]), headers
    d.refresh()
    wait(d).until(ec.presence_of_element_located((By.ID, "login")))
    assert re.search("is no longer accepted|Your session has ended", d.page_source)

    sign_in(d, console, console.engineer)  # an engineer may: the button is there and works
    d.get(f"{console.base}/runs")
    queue = d.find_element(By.ID, "queue").text
    assert "smart-terminal" in queue and "1" in queue, queue  # the waiting run, under its device's class
    full_page(d, shots / "runs.png")
    d.get(f"{console.base}/runs/{run['id']}")
    d.find_element(By.ID, "cancel").click()
    assert flash(d) == f"Run {run['id']} cancelled."
    run_status(d, "cancelled")
    sign_out(d)


def test_admin_makes_and_revokes_a_token_that_others_may_not_touch(console: Console, browser: Any,
                                                                   shots: Path) -> None:
    d: WebDriver = browser
    sign_in(d, console, console.lab.admin_token)
    d.get(console.base + "/tokens")
    Select(d.find_element(By.ID, "role")).select_by_visible_text("certifier")
    d.find_element(By.ID, "expires_in").send_keys("3600")
    d.find_element(By.CSS_SELECTOR, "#create-form button[type=submit]").click()
    secret = wait(d).until(ec.presence_of_element_located((By.ID, "minted-secret"))).text
    token_id = d.find_element(By.CSS_SELECTOR, "#minted h2").text.split()[-1]
    assert secret.startswith("plt_certifier_") and token_id.startswith("tok-"), (secret, token_id)
    full_page(d, shots / "tokens.png")
    d.get(console.base + "/tokens")  # shown once: not on the page again, anywhere
    assert secret not in d.page_source and token_id in d.find_element(By.ID, "tokens").text

    http = Http(console.base)  # the new token works, but not here: tokens are for admins
    csrf = http.sign_in(secret)
    assert http.request("/tokens")[0] == 403
    status, body, _ = http.request("/tokens", {"csrf": csrf, "role": "admin"})
    assert status == 403 and "certifier token may not create tokens" in body, (status, body[-300:])
    assert http.request("/tokens/revoke", {"csrf": csrf, "id": token_id})[0] == 403

    d.find_element(By.CSS_SELECTOR, f"#tok-row-{token_id} button[value='{token_id}']").click()
    assert flash(d) == f"Token {token_id} (certifier) is revoked: refused from now on."
    assert "revoked" in d.find_element(By.ID, f"tok-row-{token_id}").text
    status, _, headers = http.request("/devices")  # its console session ended with it
    assert status == 303 and headers["Location"].startswith("/login"), headers
    actions = [(e.action, e.target) for e in console.rpc("ListAudit", target=token_id).entries]
    assert actions == [("token.revoke", token_id), ("token.create", token_id)], actions
    sign_out(d)


def test_forms_need_their_csrf_token(console: Console) -> None:
    http = Http(console.base)
    csrf = http.sign_in(console.lab.admin_token)
    change = {"set": f"{console.device} quarantined"}
    for form, headers in (
            (change, {}),  # no token
            ({**change, "csrf": "forged"}, {}),  # a wrong one
            ({**change, "csrf": csrf}, {"Origin": "http://evil.example"}),  # the right one, posted by another site
            ({**change, "csrf": csrf}, {"Referer": "http://evil.example/page"})):
        status, body, _ = http.request("/devices/state", form, headers)
        assert status == 403, (form, headers, status, body[-300:])
    status, _, _ = http.request("/logout", {})
    assert status == 403
    fresh = Http(console.base)  # the sign-in form's token is checked too
    status, _, _ = fresh.request("/login", {"token": console.lab.admin_token})
    assert status == 403
    assert console.rpc.device(console.device).state == "draining"  # as the drain test left it


def test_works_without_javascript_on_a_tablet(console: Console, browser: Any, shots: Path) -> None:
    """Scripts off, 820 px wide: sign in, and release the drained device with its button."""
    d: WebDriver = browser
    d.execute_cdp_cmd("Emulation.setScriptExecutionDisabled", {"value": True})
    d.set_window_size(820, 1180)
    try:
        sign_in(d, console, console.lab.admin_token)
        d.find_element(By.CSS_SELECTOR, f"button[value='{console.device} active']").click()
        assert flash(d) == f"Device {console.device} is now active."
        assert console.rpc.device(console.device).state == "active"
        d.save_screenshot(str(shots / "fleet-tablet.png"))
        done = next(r.id for r in console.rpc("ListRuns").runs if r.status == common_pb2.STATUS_COMPLETED)
        d.get(f"{console.base}/runs/{done}")
        frame = d.find_element(By.ID, "report-frame")  # the report, at the stylesheet's height: no script fitted it
        assert 400 < frame.size["height"] < 1200, frame.size
        sign_out(d)
    finally:
        d.execute_cdp_cmd("Emulation.setScriptExecutionDisabled", {"value": False})
        d.set_window_size(1280, 900)
