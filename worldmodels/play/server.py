"""``wm play``'s transport: a local page and one WebSocket, served by aiohttp.

Why aiohttp: one mature, asyncio-native library (the aio-libs project, in wide use since 2014)
holds the HTTP server, the WebSocket endpoint and a WebSocket client, which the tests and the
benchmark use to drive Chromium over the DevTools Protocol; Starlette would need uvicorn and a
websockets package beside it for the same. It is the ``play`` extra: ``pip install
'worldmodels[play]'``.

The page sends JSON commands (the action with a sequence number, reset, pause, tau, real beside
dream, who drives, record); the server steps the session ``fps`` times a second in a worker
thread and answers each step with one binary message: a little-endian uint32 header length, the
JSON header (readouts, the last action's sequence number) and the raw RGBA pixels of each 64x64
panel, which the page puts on canvases scaled up with ``image-rendering: pixelated`` (no image
codec on either side; ~16 KiB a panel).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import struct
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from worldmodels.agents import AGENTS
from worldmodels.core.device import pick_device
from worldmodels.core.errors import UserError
from worldmodels.play.session import PlayConfig, Session
from worldmodels.runs.rundir import RunDir

try:
    from aiohttp import WSMsgType, web
except ImportError:  # the optional extra
    web = None

PAGE = Path(__file__).with_name("page.html")
RECORDING = re.compile(r"^play_\d{8}_\d{6}\.mp4$")


def rgba(frame: np.ndarray) -> bytes:
    """``[H, W, 3]`` uint8 -> RGBA bytes, as a canvas ``ImageData`` holds them."""
    return np.dstack([frame, np.full(frame.shape[:2], 255, np.uint8)]).tobytes()


class Game:
    """The session behind the socket: commands queue up and are applied by ``tick``, one thread at a time."""

    def __init__(self, session: Session):
        self.session = session
        self.commands: list[dict] = []
        self.seq = 0  # the sequence number of the last action command applied

    def apply(self, command: dict) -> None:
        s, kind = self.session, command.get("type")
        if kind == "action":
            s.set_action(command.get("action"))
            self.seq = int(command.get("seq", self.seq))
        elif kind == "reset":
            s.reset(None if command.get("episode") is None else int(command["episode"]))
        elif kind == "pause":
            s.paused = bool(command["on"])
        elif kind == "tau":
            s.temperature = max(0.0, float(command["value"]))
        elif kind == "real":
            s.set_real(command["on"])
        elif kind == "driver":
            s.set_driver(command.get("agent") or None)
        elif kind == "record":
            s.record(bool(command["on"]))
        else:
            raise ValueError(f"unknown command {kind!r}")

    def tick(self) -> bytes | None:
        """Apply the queued commands, step once; the frame message, or None when nothing changed."""
        notes, changed = [], bool(self.commands)
        while self.commands:
            command = self.commands.pop(0)
            try:
                self.apply(command)
            except (UserError, ValueError, KeyError, TypeError) as e:
                notes.append(f"{command.get('type')}: {e}")
        stepped = self.session.step()
        if not (stepped or changed):
            return None
        return self.message(stepped, notes)

    def message(self, stepped: bool, notes: list[str]) -> bytes:
        s = self.session
        panels = [s.dream_frame] + ([s.real_frame] if s.real_frame is not None else [])
        header = {**s.readouts(), "seq": self.seq, "stepped": stepped, "notes": notes, "panels": len(panels),
                  "width": 64, "height": 64}
        head = json.dumps(header).encode()
        return struct.pack("<I", len(head)) + head + b"".join(rgba(p) for p in panels)

    def hello(self) -> dict:
        s = self.session
        return {"type": "hello", "run": s.run.root.name, "env": s.run.env_spec()[0], "controls": s.controls,
                "episodes": list(s.episodes), "seeded": all(i in s.seeds for i in s.episodes),
                "agents": list(AGENTS), "agent": s.config.agent, "fps": s.config.fps, "tau": s.temperature,
                "done_threshold": s.config.dream.done_threshold, "real": s.real_on}


def make_app(session: Session) -> web.Application:
    """The page (``/``), its socket (``/ws``: one player at a time, a new one takes over) and the
    recordings (``/recordings/NAME``)."""
    game, pool = Game(session), ThreadPoolExecutor(1, thread_name_prefix="wm-play")
    current: dict = {}

    async def page(request):
        return web.Response(text=PAGE.read_text(), content_type="text/html")

    async def recording(request):
        name = request.match_info["name"]
        path = session.run.root / "play" / name
        if not RECORDING.match(name) or not path.is_file():
            raise web.HTTPNotFound()
        return web.FileResponse(path)

    async def socket(request):
        ws = web.WebSocketResponse(heartbeat=30)
        await ws.prepare(request)
        if current.get("ws") is not None:
            await current["ws"].close()
        current["ws"] = ws
        game.commands.append({"type": "reset", "episode": None})
        await ws.send_json(game.hello())
        loop = asyncio.get_running_loop()

        async def run() -> None:
            period, due = 1 / session.config.fps, loop.time()
            while not ws.closed:
                message = await loop.run_in_executor(pool, game.tick)
                if message is not None:
                    try:
                        await ws.send_bytes(message)
                    except ConnectionError:  # the page went away mid-send
                        return
                # Late ticks are made up for (the rate holds under jitter), but never more than
                # a quarter second of them at once.
                due = max(due + period, loop.time() - 0.25)
                await asyncio.sleep(due - loop.time())

        ticker = asyncio.create_task(run())
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    with contextlib.suppress(json.JSONDecodeError):
                        game.commands.append(json.loads(msg.data))
        finally:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await ticker
            if current.get("ws") is ws:
                current.pop("ws")
        return ws

    async def shutdown(app) -> None:
        pool.shutdown(wait=True)

    app = web.Application()
    app.router.add_get("/", page)
    app.router.add_get("/ws", socket)
    app.router.add_get("/recordings/{name}", recording)
    app.on_shutdown.append(shutdown)
    return app


def serve(run: RunDir, config: PlayConfig) -> None:
    """Serve the page until Ctrl-C; prints its URL once listening. A recording in progress is saved on exit."""
    if web is None:
        raise UserError("wm play needs aiohttp: pip install 'worldmodels[play]'")
    run.read_meta()
    device = pick_device(config.device)
    if device.type == "cpu":
        # One frame at a time gains nothing from intra-op threads; on a 2-core CPU they only fight
        # the browser for the cores (a step takes 10x longer under load with 2 threads than with 1).
        torch.set_num_threads(1)
    session = Session(run, config, device)
    if config.agent not in AGENTS:
        raise UserError(f"unknown agent {config.agent!r}; choose one of {', '.join(AGENTS)}")

    async def main() -> None:
        runner = web.AppRunner(make_app(session), handle_signals=False)
        await runner.setup()
        try:
            await web.TCPSite(runner, config.host, config.port).start()
        except OSError as e:
            await runner.cleanup()
            raise UserError(f"cannot listen on {config.host}:{config.port} ({e.strerror or e}): "
                            "pass another --port (0: any free one)") from None
        host, port = runner.addresses[0][:2]
        print(f"wm play: http://{f'[{host}]' if ':' in host else host}:{port}/  (Ctrl-C stops)", flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
    finally:
        saved = session.record(False)
        if saved:
            print(f"wm play: recording saved to {session.run.root / 'play' / saved}")
    print("wm play: stopped")
