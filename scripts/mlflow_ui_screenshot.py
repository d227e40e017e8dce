"""A screenshot of a finished sweep in the MLflow UI (its trial runs grouped by configuration, the
view the sweep's printed link opens), e.g. the README's picture from the demo's own store:

    make demo
    .venv/bin/python scripts/mlflow_ui_screenshot.py --out docs/img/mlflow_ui.png

Starts ``mlflow ui`` as ``make ui`` does (on a free port, stopped at the end) over the store
(``$MLFLOW_TRACKING_URI`` or ./mlflow.db), and drives Debian's headless chromium through selenium
(``make setup`` installs both). Reads the store only. Exit code 2 with one line when something is
missing (the store, a sweep, the browser).
"""
from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


def fail(message: str) -> None:
    print(f"mlflow_ui_screenshot: {message}", file=sys.stderr)
    sys.exit(2)


def main(argv=None) -> None:
    from seglab.platform import tracking
    from seglab.platform.report import ui

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--uri", default=None, help="tracking URI (default: $MLFLOW_TRACKING_URI or ./mlflow.db)")
    p.add_argument("--experiment", default="seglab")
    p.add_argument("--sweep", default=None, help="the sweep's parent run id (default: the latest sweep)")
    p.add_argument("--out", default="docs/img/mlflow_ui.png")
    p.add_argument("--size", default="1600,1000", help="browser window WIDTH,HEIGHT")
    args = p.parse_args(argv)
    uri = args.uri or tracking.tracking_uri()
    if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///"):]).is_file():
        fail(f"no MLflow store at {uri} (run a sweep first, or pass --uri)")
    if not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)):
        fail(f"needs {CHROMIUM} and {CHROMEDRIVER}: run `make setup` (scripts/setup_system.sh installs them)")
    c = tracking.client(uri)
    exp = c.get_experiment_by_name(args.experiment)
    if exp is None:
        fail(f"no experiment '{args.experiment}' in {uri}")
    parent = args.sweep
    if parent is None:
        found = c.search_runs([exp.experiment_id], "tags.`seglab.kind` = 'sweep'", order_by=["attributes.start_time DESC"],
                              max_results=1)
        if not found:
            fail(f"no sweep run in experiment '{args.experiment}' of {uri}")
        parent = found[0].info.run_id
    if ui.VIEW_TAG_PREFIX + ui.view_key(parent) not in (c.get_experiment(exp.experiment_id).tags or {}):
        fail(f"sweep {parent} has no grouped view (it ended before seglab published one to the UI)")

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([str(Path(sys.executable).parent / "mlflow"), "ui", "--backend-store-uri", uri,
                               "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
                              env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=2):
                    break
            except OSError:
                if server.poll() is not None or time.time() > deadline:
                    fail("mlflow ui did not start")
                time.sleep(0.5)
        shoot(ui.sweep_view_url(base, exp.experiment_id, parent), Path(args.out), args.size)
    finally:  # mlflow ui and its uvicorn worker: their own process group
        try:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=15)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
    print(f"{args.out}: sweep {parent} of experiment '{args.experiment}' ({Path(args.out).stat().st_size // 1024} KB)")


def shoot(url: str, out: Path, size: str) -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", f"--window-size={size}",
                 "--hide-scrollbars", "--lang=en-US"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        driver.get(url)
        deadline = time.time() + 30
        while "Group: " not in driver.find_element("tag name", "body").text:
            if time.time() > deadline:
                fail(f"the grouped view did not show at {url}")
            time.sleep(0.25)
        for button in driver.find_elements("css selector",
                                           "button[data-component-id='mlflow.assistant.chat_panel.close']"):
            if button.is_displayed():
                button.click()  # the assistant panel would take a third of the picture
        time.sleep(1.0)
        out.parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(out))
    finally:
        driver.quit()


if __name__ == "__main__":
    main()
