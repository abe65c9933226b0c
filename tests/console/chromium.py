"""Headless Chromium driven over the DevTools protocol (a websocket), so a test can fill forms,
click, type, follow navigations, read the page the way a person would and take screenshots. The
machine's own Chromium; nothing downloaded. The one driver every browser test and script uses.

Chromium starts in a process group of its own (a new session) and the whole group is killed when
the Browser closes, is collected, or the interpreter exits; a watchdog process kills it too when
this process dies without a word (SIGKILL, an OOM kill), since an interrupted run otherwise left
headless renderers spinning with nobody to stop them."""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import weakref
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from websockets.sync.client import ClientConnection, connect

CHROMIUM = next(
    (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None
)

# Waits for its stdin to close (the parent gone, however it went), then kills the browser's group.
# close() stops the watchdog first, so it never fires at a group id that could have been reused.
_WATCHDOG = (
    "import os, signal, sys\n"
    "sys.stdin.buffer.read()\n"
    "try:\n"
    "    os.killpg(int(sys.argv[1]), signal.SIGKILL)\n"
    "except ProcessLookupError:\n"
    "    pass\n"
)


def _kill_group(process: subprocess.Popen[bytes], watchdog: subprocess.Popen[bytes]) -> None:
    """SIGKILL the browser's whole group at once (its profile is throwaway: nothing to shut down
    gracefully); the helpers, re-parented, are reaped by init. Stop the watchdog first."""
    watchdog.kill()
    watchdog.wait(timeout=20)
    if watchdog.stdin is not None:
        watchdog.stdin.close()
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=20)


class Browser:
    """One headless Chromium with one tab.

    `width`/`height` set the window (and so the viewport and screenshots)."""

    def __init__(self, profile: Path, *, width: int = 1280, height: int = 800) -> None:
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
                "--hide-scrollbars",
                f"--window-size={width},{height}",
                "--remote-debugging-port=0",
                f"--user-data-dir={profile}",
                "about:blank",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: killed as one
            # Its crash handler runs in a session of its own (outside the group) and ends when the
            # browser does; its files go under the profile, which also names it in `ps`.
            env={**os.environ, "XDG_CONFIG_HOME": str(profile / "config")},
        )
        watchdog = subprocess.Popen(
            [sys.executable, "-S", "-c", _WATCHDOG, str(self._process.pid)],
            stdin=subprocess.PIPE,
            start_new_session=True,  # a Ctrl-C to the test's group must not fire it early
        )
        self._finalizer = weakref.finalize(self, _kill_group, self._process, watchdog)
        self._ws: ClientConnection | None = None
        self._stack = ExitStack()
        try:
            self._attach(profile)
        except BaseException:
            self._finalizer()
            raise

    def _attach(self, profile: Path) -> None:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (port_file.exists() and len(port_file.read_text().splitlines()) == 2):
            if self._process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("chromium did not open its DevTools port")
            time.sleep(0.05)
        port, path = port_file.read_text().splitlines()
        # The browser's own socket; the tab is a flattened session on it, so browser-wide commands
        # (permissions) and the page's share one connection.
        # Events pile up between calls (a script may not talk to the browser for minutes): an
        # unbounded queue keeps the socket read, and no keepalive pings on a loopback socket.
        self._ws = self._stack.enter_context(
            connect(f"ws://127.0.0.1:{port}{path}", max_size=None, max_queue=None, ping_interval=None)
        )
        self._ids = itertools.count(1)
        self._session: str | None = None
        target = self.call("Target.createTarget", url="about:blank")
        self._session = self.call("Target.attachToTarget", targetId=target["targetId"], flatten=True)[
            "sessionId"
        ]
        self.call("Page.enable")
        self.call("Runtime.enable")

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        """One DevTools command to the tab; its result."""
        return self._send(method, params, self._session)

    def browser_call(self, method: str, **params: Any) -> dict[str, Any]:
        """One DevTools command to the browser itself (Browser.*, Target.*)."""
        return self._send(method, params, None)

    def _send(self, method: str, params: dict[str, Any], session: str | None) -> dict[str, Any]:
        assert self._ws is not None
        message_id = next(self._ids)
        message: dict[str, Any] = {"id": message_id, "method": method, "params": params}
        if session is not None:
            message["sessionId"] = session
        self._ws.send(json.dumps(message))
        while True:  # events arrive between answers; only the answer to this call matters here
            reply = json.loads(self._ws.recv(timeout=60))
            if reply.get("id") == message_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                result: dict[str, Any] = reply.get("result", {})
                return result

    def eval(self, expression: str) -> Any:
        """The value of `expression` (a promise is awaited), run as if from a user gesture."""
        result = self.call(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True, userGesture=True
        )
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

    def type_text(self, text: str) -> None:
        """Type into the focused element as a keyboard would (input events, not a value set)."""
        self.call("Input.insertText", text=text)

    def press_enter(self) -> None:
        for kind in ("keyDown", "keyUp"):
            self.call(
                "Input.dispatchKeyEvent",
                type=kind,
                key="Enter",
                code="Enter",
                windowsVirtualKeyCode=13,
                text="\r",
            )

    def allow_clipboard(self, origin: str) -> None:
        """Let pages of `origin` read and write the clipboard, and keep the tab focused (a
        headless tab is not, and the clipboard refuses an unfocused document)."""
        self.browser_call(
            "Browser.grantPermissions",
            origin=origin,
            permissions=["clipboardReadWrite", "clipboardSanitizedWrite"],
        )
        self.call("Emulation.setFocusEmulationEnabled", enabled=True)

    def text(self, selector: str = "body") -> str:
        return str(self.eval(f"document.querySelector({json.dumps(selector)}).innerText"))

    def html(self) -> str:
        """The document as it is now (after its scripts ran), like `chromium --dump-dom`."""
        return str(self.eval("document.documentElement.outerHTML"))

    def wait_for(self, expression: str, timeout: float = 30.0) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.eval(expression)
            if value:
                return value
            time.sleep(0.1)
        raise TimeoutError(expression)

    def screenshot(self, path: Path, *, full_page: bool = True) -> None:
        """A PNG of the tab at the window's width; the whole page's height unless `full_page` is off."""
        params: dict[str, Any] = {"format": "png", "captureBeyondViewport": full_page}
        if full_page:
            size = self.call("Page.getLayoutMetrics")["cssContentSize"]
            width = self.eval("document.documentElement.clientWidth")
            params["clip"] = {"x": 0, "y": 0, "width": width, "height": size["height"], "scale": 1}
        shot = self.call("Page.captureScreenshot", **params)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(shot["data"]))

    @property
    def url(self) -> str:
        return str(self.eval("location.href"))

    def close(self) -> None:
        try:
            self._stack.close()
        finally:
            self._finalizer()
