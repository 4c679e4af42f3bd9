#!/usr/bin/env python
"""Screenshot of the project's pipeline graph in Kedro-Viz (for the README).

    .venv/bin/python scripts/viz_screenshot.py [--output docs/images/kedro_viz_pipeline.png]
                                               [--theme light|dark] [--expand] [--env ENV]

Starts ``kedro viz run`` on 127.0.0.1 in its own process group, waits until its REST API
answers, opens the flowchart in headless Chromium (Debian: ``apt-get install -y chromium``)
driven over the DevTools protocol, waits until the graph is drawn and its layout has settled,
saves a PNG and stops the server and the browser (each one's whole process group).

Driving the browser (rather than ``chromium --screenshot``) lets the script turn off the
first-visit feature tour, choose the colour theme and wait for the actual graph instead of a
fixed time budget, so the picture never shows a loading page or a tour pop-up.
"""
from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import ExitStack
from pathlib import Path

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

ROOT = Path(__file__).resolve().parents[1]
MAX_VIZ_PORT = 49151  # Kedro-Viz refuses higher ports


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    if port <= MAX_VIZ_PORT:
        return port
    for port in range(20000, MAX_VIZ_PORT):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port below 49152 on 127.0.0.1")


def find_kedro() -> str:
    local = ROOT / ".venv" / "bin" / "kedro"
    if local.exists():
        return str(local)
    found = shutil.which("kedro")
    if not found:
        raise SystemExit("error: kedro not found; run `make install` first")
    return found


def find_chromium(explicit: str | None) -> str:
    for name in ([explicit] if explicit else ["chromium", "chromium-browser", "google-chrome"]):
        found = shutil.which(name)
        if found:
            return found
    raise SystemExit("error: no Chromium found; on Debian: apt-get install -y chromium")


def stop_group(process: subprocess.Popen, grace: float = 5.0) -> None:
    """End the process group the script started for ``process`` (SIGTERM, then SIGKILL)."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    except ProcessLookupError:
        pass


def wait_for(predicate, timeout: float, what: str, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


class DevTools:
    """Minimal Chrome DevTools Protocol client over one page's websocket."""

    def __init__(self, websocket):
        self._ws = websocket
        self._next_id = 0

    def call(self, method: str, **params):
        self._next_id += 1
        self._ws.send(json.dumps({"id": self._next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self._ws.recv(timeout=60))
            if message.get("id") == self._next_id:
                if "error" in message:
                    raise RuntimeError(f"{method} failed: {message['error']}")
                return message.get("result", {})

    def evaluate(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"JavaScript error in {expression!r}: {result['exceptionDetails']}")
        return result["result"].get("value")


GRAPH_STATE_JS = """
(() => {
  const nodes = [...document.querySelectorAll('.pipeline-node')];
  const spinner = document.querySelector('.pipeline-loading-icon--visible, .loading');
  return JSON.stringify({
    n: nodes.length,
    boxes: nodes.map(n => { const b = n.getBoundingClientRect(); return [Math.round(b.x), Math.round(b.y)]; }),
    loading: Boolean(spinner),
  });
})()
"""

HIDE_MINIMAP_JS = """
(() => {
  const button = document.querySelector('.pipeline-minimap-button--map');
  if (button && /off/.test(button.getAttribute('aria-label') || '')) { button.click(); return true; }
  return false;
})()
"""

RESET_ZOOM_JS = """
(() => {
  const button = document.querySelector('.pipeline-minimap-button--reset');
  if (button) { button.click(); return true; }
  return false;
})()
"""

# The update reminder (its version check needs the internet) is closed like a user would.
DISMISS_JS = """
(() => {
  let clicked = 0;
  for (const button of document.querySelectorAll('button')) {
    const text = button.textContent.trim();
    if (text === 'Dismiss') { button.click(); clicked++; }
  }
  return clicked;
})()
"""


def screenshot(url: str, output: Path, chromium: str, width: int, height: int, theme: str, timeout: float) -> int:
    """Render ``url`` and write a PNG to ``output``; returns the number of graph nodes drawn."""
    with ExitStack() as stack:
        profile = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="viz-chromium-")))
        browser = subprocess.Popen(
            [
                chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--hide-scrollbars", f"--user-data-dir={profile}", f"--window-size={width},{height}",
                "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0", "about:blank",
            ],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        stack.callback(stop_group, browser)
        port_file = profile / "DevToolsActivePort"
        wait_for(lambda: port_file.exists() and port_file.read_text().strip(), 60, "Chromium's DevTools port")
        cdp_port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{cdp_port}/json/list", timeout=10) as response:
            pages = [t for t in json.load(response) if t.get("type") == "page"]
        page = DevTools(stack.enter_context(connect(pages[0]["webSocketDebuggerUrl"], max_size=None, open_timeout=30)))
        page.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)
        page.call("Page.enable")

        # The viewer's settings (no feature tour, chosen theme, full names) go into localStorage
        # before any of the page's scripts run, so the app starts with them. "Pretty names" strip
        # the namespace (mvar.model and lstm.model would both read "Model"), so they stay off.
        settings = {"showFeatureHints": False, "theme": theme, "isPrettyName": False}
        page.call(
            "Page.addScriptToEvaluateOnNewDocument",
            source="(() => { const key = 'KedroViz';"
            " const state = JSON.parse(localStorage.getItem(key) || '{}');"
            f" localStorage.setItem(key, JSON.stringify(Object.assign(state, {json.dumps(settings)}))); }})()",
        )
        page.call("Page.navigate", url=url)
        wait_for(lambda: page.evaluate("document.readyState") == "complete", timeout, f"{url} to load")

        # The graph is laid out in a web worker and animated into place: wait until nodes exist
        # and their positions stay put over consecutive polls.
        previous = {"boxes": None}

        def settled():
            state = json.loads(page.evaluate(GRAPH_STATE_JS))
            stable = state["n"] > 0 and not state["loading"] and state["boxes"] == previous["boxes"]
            previous["boxes"] = state["boxes"]
            return state["n"] if stable else 0

        n_nodes = wait_for(settled, timeout, "the pipeline graph to be drawn", interval=1.0)
        page.evaluate(DISMISS_JS)
        # Without the minimap the graph gets the whole canvas: refit it and wait again.
        if page.evaluate(HIDE_MINIMAP_JS):
            page.evaluate(RESET_ZOOM_JS)
            previous["boxes"] = None
            n_nodes = wait_for(settled, timeout, "the refitted graph", interval=1.0)
        shot = page.call("Page.captureScreenshot", format="png", captureBeyondViewport=False)
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_bytes(base64.b64decode(shot["data"]))
        try:  # a graceful exit lets Chromium reap its own helper processes
            page.call("Browser.close")
            browser.wait(timeout=10)
        except (subprocess.TimeoutExpired, RuntimeError, OSError, ConnectionClosed):
            pass
        return n_nodes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "images" / "kedro_viz_pipeline.png")
    parser.add_argument("--port", type=int, default=None, help="Kedro-Viz port (default: a free one below 49152)")
    parser.add_argument("--env", default=None, help="Kedro environment to visualise (default: Kedro's own)")
    parser.add_argument("--pipeline", default="__default__", help="pipeline shown (URL parameter pid)")
    parser.add_argument("--expand", action="store_true", help="expand every namespace (modular pipeline)")
    parser.add_argument("--theme", choices=("light", "dark"), default="light")
    parser.add_argument("--width", type=int, default=1600)
    parser.add_argument("--height", type=int, default=1300)
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds for each wait")
    parser.add_argument("--chromium", default=None, help="browser executable (default: chromium on PATH)")
    args = parser.parse_args(argv)

    port = args.port or free_port()
    if port > MAX_VIZ_PORT:
        parser.error(f"Kedro-Viz refuses ports above {MAX_VIZ_PORT}")
    chromium = find_chromium(args.chromium)
    output = args.output if args.output.is_absolute() else Path.cwd() / args.output
    env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "1"}
    command = [find_kedro(), "viz", "run", "--host", "127.0.0.1", "--port", str(port), "--no-browser"]
    if args.env:
        command += ["--env", args.env]

    with ExitStack() as stack:
        log = stack.enter_context(tempfile.TemporaryFile(mode="w+"))
        # start_new_session: the server and any worker it spawns form one process group, ended as a whole.
        server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                  start_new_session=True)
        stack.callback(stop_group, server)
        base = f"http://127.0.0.1:{port}"
        try:
            wait_for(lambda: server.poll() is not None or http_ok(f"{base}/api/main"), args.timeout,
                     f"kedro viz on {base}")
            if server.poll() is not None:
                raise RuntimeError(f"kedro viz exited with status {server.returncode}")
        except (TimeoutError, RuntimeError) as exc:
            log.seek(0)
            sys.stderr.write(log.read()[-4000:])
            raise SystemExit(f"error: {exc}") from exc
        query = f"pid={args.pipeline}" + ("&expandAllPipelines=true" if args.expand else "")
        n_nodes = screenshot(f"{base}/?{query}", output, chromium, args.width, args.height, args.theme, args.timeout)
    print(f"wrote {output} ({n_nodes} graph nodes drawn)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
