"""Headless Chromium driven over the Chrome DevTools Protocol, with aiohttp's WebSocket client: how
the tests and ``benchmarks/play.py`` press keys on the ``wm play`` page, read it and screenshot it.

    async with Chromium(url, profile_dir) as page:
        await page.key("ArrowRight")
        stats = await page.evaluate("window.playStats")
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import shutil
import subprocess
import time
from pathlib import Path

try:
    import aiohttp
except ImportError:  # the optional extra; ``Chromium`` then fails on entry
    aiohttp = None

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--remote-debugging-port=0", "--window-size=1400,1000",
         "--autoplay-policy=no-user-gesture-required"]
KEY_CODES = {"ArrowLeft": 37, "ArrowUp": 38, "ArrowRight": 39, "ArrowDown": 40, " ": 32}


def find_browser() -> str | None:
    """The path of an installed Chromium or Chrome, or None."""
    return next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)


class Chromium:
    """One headless browser with one page open at ``url``; console errors and uncaught exceptions collect in ``errors``."""

    def __init__(self, url: str, profile: Path, browser: str | None = None):
        self.url, self.profile, self.browser = url, Path(profile), browser or find_browser()
        self.errors: list[str] = []
        self.ids = itertools.count(1)
        self.pending: dict[int, asyncio.Future] = {}

    async def __aenter__(self) -> Chromium:
        if self.browser is None:
            raise RuntimeError("no Chromium or Chrome installed")
        self.profile.mkdir(parents=True, exist_ok=True)
        (self.profile / "DevToolsActivePort").unlink(missing_ok=True)
        self.process = subprocess.Popen([self.browser, *FLAGS, f"--user-data-dir={self.profile}", self.url],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file, deadline = self.profile / "DevToolsActivePort", time.monotonic() + 30
        while not (port_file.exists() and port_file.read_text().strip()):
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError(f"{self.browser} did not open its DevTools port")
            await asyncio.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        self.http = aiohttp.ClientSession()
        for _ in range(100):
            async with self.http.get(f"http://127.0.0.1:{port}/json/list") as response:
                pages = [t for t in await response.json() if t["type"] == "page"]
            if pages:
                break
            await asyncio.sleep(0.1)
        self.ws = await self.http.ws_connect(pages[0]["webSocketDebuggerUrl"], max_msg_size=0)
        self.reader = asyncio.create_task(self.read())
        for domain in ("Runtime", "Log", "Page"):
            await self.send(f"{domain}.enable")
        return self

    async def __aexit__(self, *exc) -> None:
        self.reader.cancel()
        await self.ws.close()
        await self.http.close()
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()

    async def read(self) -> None:
        async for msg in self.ws:
            data = json.loads(msg.data)
            if "id" in data:
                self.pending.pop(data["id"]).set_result(data)
            elif data.get("method") == "Runtime.consoleAPICalled" and data["params"]["type"] in ("error", "assert"):
                self.errors.append(" ".join(str(a.get("value", a.get("description"))) for a in data["params"]["args"]))
            elif data.get("method") == "Runtime.exceptionThrown":
                self.errors.append(data["params"]["exceptionDetails"].get("exception", {}).get("description", "exception"))
            elif data.get("method") == "Log.entryAdded" and data["params"]["entry"]["level"] == "error":
                self.errors.append(data["params"]["entry"]["text"])

    async def send(self, method: str, **params) -> dict:
        """Call a DevTools method; its result (a ``RuntimeError`` for a protocol error)."""
        number = next(self.ids)
        future = asyncio.get_running_loop().create_future()
        self.pending[number] = future
        await self.ws.send_json({"id": number, "method": method, "params": params})
        reply = await asyncio.wait_for(future, 30)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply["result"]

    async def evaluate(self, expression: str):
        """The JSON value of a JavaScript expression in the page (promises awaited)."""
        result = await self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def wait_for(self, expression: str, timeout: float = 20.0):
        """Poll until the expression is truthy (one that throws counts as false, as on a page still loading);
        returns its value (a ``TimeoutError`` naming it if never)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(RuntimeError):
                value = await self.evaluate(expression)
                if value:
                    return value
            await asyncio.sleep(0.05)
        raise TimeoutError(f"not true within {timeout} s: {expression}")

    async def key(self, key: str, down: bool = True, up: bool = True) -> None:
        """Press (``down``) and/or release (``up``) ``key`` as the page's key events see it (``event.key``)."""
        code = KEY_CODES.get(key, ord(key.upper()) if len(key) == 1 else 0)
        text = {"text": key} if len(key) == 1 else {}
        for kind, go in (("keyDown", down), ("keyUp", up)):
            if go:
                await self.send("Input.dispatchKeyEvent", type=kind, key=key, windowsVirtualKeyCode=code,
                                **(text if kind == "keyDown" else {}))

    async def screenshot(self, path: Path, width: int | None = None, height: int | None = None) -> None:
        """A PNG of the page as shown (its top-left ``width`` x ``height`` pixels when given)."""
        clip = {"clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 1}} if width and height else {}
        result = await self.send("Page.captureScreenshot", format="png", **clip)
        Path(path).write_bytes(base64.b64decode(result["data"]))
