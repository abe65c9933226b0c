"""Headless Chromium driven over the DevTools protocol (a websocket), so a test can fill forms,
click, follow navigations and read the page the way a person would. The machine's own Chromium,
as tests/test_verify_page.py uses; nothing downloaded."""

from __future__ import annotations

import itertools
import json
import shutil
import subprocess
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx2
from websockets.sync.client import ClientConnection, connect

CHROMIUM = next(
    (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None
)


class Browser:
    """One headless Chromium with one tab."""

    def __init__(self, profile: Path) -> None:
        assert CHROMIUM is not None
        profile.mkdir(parents=True, exist_ok=True)
        self._process = subprocess.Popen(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--no-first-run",
                "--remote-debugging-port=0",
                f"--user-data-dir={profile}",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            self._attach(profile)
        except BaseException:
            self._process.terminate()
            self._process.wait(timeout=20)
            raise

    def _attach(self, profile: Path) -> None:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (port_file.exists() and port_file.read_text().strip()):
            if time.monotonic() > deadline:
                raise RuntimeError("chromium did not open its DevTools port")
            time.sleep(0.05)
        port = port_file.read_text().split()[0]
        pages = [t for t in httpx2.get(f"http://127.0.0.1:{port}/json/list").json() if t["type"] == "page"]
        self._stack = ExitStack()
        self._ws: ClientConnection = self._stack.enter_context(
            connect(pages[0]["webSocketDebuggerUrl"], max_size=None)
        )
        self._ids = itertools.count(1)
        self.call("Page.enable")
        self.call("Runtime.enable")

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        message_id = next(self._ids)
        self._ws.send(json.dumps({"id": message_id, "method": method, "params": params}))
        while True:
            reply = json.loads(self._ws.recv(timeout=60))
            if reply.get("id") == message_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                result: dict[str, Any] = reply.get("result", {})
                return result

    def eval(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def _mark(self) -> None:
        self.eval("window.__batchinOld = true")

    def _wait_new_page(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self.eval("!window.__batchinOld && document.readyState === 'complete'"):
                    return
            except RuntimeError:
                pass  # the context was torn down mid-navigation
            time.sleep(0.05)
        raise TimeoutError(f"no new page loaded; still at {self.url}")

    def goto(self, url: str) -> None:
        self._mark()
        self.call("Page.navigate", url=url)
        self._wait_new_page()

    def fill(self, selector: str, value: str) -> None:
        self.eval(f"document.querySelector({json.dumps(selector)}).value = {json.dumps(value)}")

    def check(self, selector: str, checked: bool = True) -> None:
        self.eval(f"document.querySelector({json.dumps(selector)}).checked = {json.dumps(checked)}")

    def click(self, selector: str, *, navigates: bool = True) -> None:
        """Click like a person (a trusted click at the element's centre), then wait for the page."""
        if navigates:
            self._mark()
        box = self.eval(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)}); e.scrollIntoView();"
            " const r = e.getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; })()"
        )
        for kind in ("mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", type=kind, x=box[0], y=box[1], button="left", clickCount=1)
        if navigates:
            self._wait_new_page()

    def text(self, selector: str = "body") -> str:
        return str(self.eval(f"document.querySelector({json.dumps(selector)}).innerText"))

    def wait_for(self, expression: str, timeout: float = 30.0) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.eval(expression)
            if value:
                return value
            time.sleep(0.1)
        raise TimeoutError(expression)

    @property
    def url(self) -> str:
        return str(self.eval("location.href"))

    def close(self) -> None:
        try:
            self._stack.close()
        finally:
            self._process.terminate()
            self._process.wait(timeout=20)
