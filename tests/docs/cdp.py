"""Just enough of the Chrome DevTools Protocol to drive the machine's headless Chromium from an
async test: open a page, run JavaScript in it, type, click, and read the clipboard. Chromium is
started per use with a fresh profile and a DevTools port of its own choosing."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp

__all__ = ["CHROMIUM", "Page", "open_page"]

_NAMES = ("chromium", "chromium-browser", "google-chrome")
CHROMIUM = next((shutil.which(n) for n in _NAMES if shutil.which(n)), None)


class Page:
    """One tab, attached through the browser's socket (flattened session)."""

    def __init__(self, socket: aiohttp.ClientWebSocketResponse, session: str | None) -> None:
        self._socket = socket
        self._session = session
        self._ids = itertools.count(1)

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        message_id = next(self._ids)
        message: dict[str, Any] = {"id": message_id, "method": method, "params": params}
        if self._session is not None:
            message["sessionId"] = self._session
        await self._socket.send_str(json.dumps(message))
        while True:  # events arrive between answers; only the answer to this call matters here
            reply = json.loads(await self._socket.receive_str())
            if reply.get("id") == message_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return dict(reply.get("result", {}))

    async def evaluate(self, expression: str) -> Any:
        """The value of `expression` (a promise is awaited); an exception in the page fails the test."""
        result = await self.send(
            "Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True, userGesture=True
        )
        if "exceptionDetails" in result:
            raise AssertionError(f"{expression!r} threw: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def wait_for(self, expression: str, timeout: float = 15.0) -> Any:
        """Polls until `expression` is truthy: the page's own scripts run asynchronously."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            value = await self.evaluate(expression)
            if value:
                return value
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"still falsy after {timeout} s: {expression}")
            await asyncio.sleep(0.1)

    async def goto(self, url: str) -> None:
        await self.send("Page.navigate", url=url)
        await self.wait_for(f"location.href === {json.dumps(url)} && document.readyState === 'complete'")

    async def click(self, selector: str) -> None:
        """A real mouse click at the middle of the element (not a synthetic DOM event)."""
        box = await self.evaluate(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)});"
            " e.scrollIntoView({block: 'center'}); const r = e.getBoundingClientRect();"
            " return [r.x + r.width / 2, r.y + r.height / 2]; })()"
        )
        for kind in ("mousePressed", "mouseReleased"):
            await self.send(
                "Input.dispatchMouseEvent", type=kind, x=box[0], y=box[1], button="left", clickCount=1
            )

    async def type_text(self, text: str) -> None:
        await self.send("Input.insertText", text=text)

    async def press_enter(self) -> None:
        for kind in ("keyDown", "keyUp"):
            await self.send(
                "Input.dispatchKeyEvent",
                type=kind,
                key="Enter",
                code="Enter",
                windowsVirtualKeyCode=13,
                text="\r",
            )


@contextlib.asynccontextmanager
async def open_page(origin: str, profile: Path) -> AsyncIterator[Page]:
    """A blank tab in a fresh headless Chromium, allowed to use the clipboard on `origin`."""
    assert CHROMIUM is not None
    process = await asyncio.create_subprocess_exec(
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--no-first-run",
        "--remote-debugging-port=0",
        f"--user-data-dir={profile}",
        "about:blank",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        port_file = profile / "DevToolsActivePort"
        for _ in range(300):  # Chromium writes the port it chose once it listens
            if port_file.is_file() and len(port_file.read_text().splitlines()) == 2:
                break
            await asyncio.sleep(0.1)
        port, path = port_file.read_text().splitlines()
        async with (
            aiohttp.ClientSession() as http,
            http.ws_connect(f"ws://127.0.0.1:{port}{path}", max_msg_size=0) as socket,
        ):
            browser = Page(socket, None)
            await browser.send(
                "Browser.grantPermissions",
                origin=origin,
                permissions=["clipboardReadWrite", "clipboardSanitizedWrite"],
            )
            target = await browser.send("Target.createTarget", url="about:blank")
            attached = await browser.send("Target.attachToTarget", targetId=target["targetId"], flatten=True)
            page = Page(socket, attached["sessionId"])
            await page.send("Page.enable")
            await page.send("Emulation.setFocusEmulationEnabled", enabled=True)
            yield page
    finally:
        if process.returncode is None:
            process.terminate()
        await process.wait()
