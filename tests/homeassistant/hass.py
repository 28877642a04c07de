"""A real Home Assistant core for tests: its process, its REST API and its websocket API.

The core comes from ``scripts/homeassistant-env`` (a virtual environment of its own, outside
this checkout, Python 3.13). :class:`HomeAssistant` runs it on 127.0.0.1 with a minimal
configuration (no ``default_config``: what a bare core sets up, plus MQTT from its config
flow), onboards it through the REST API as the frontend does and keeps a long-lived token.
:class:`HaSocket` is one authenticated websocket connection: commands are answered by id,
``state_changed`` events are recorded and can be awaited, nothing sleeps.
"""

# Test helpers take explicit timeouts (each wait names its own bound), and starting a
# short-lived process with Popen from a coroutine is fine in tests.
# ruff: noqa: ASYNC109, ASYNC220

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect

from tests.brokers import HOST, Arrivals, free_port, wait_until

HA_VERSION = "2025.4.4"
INSTALLER = "scripts/homeassistant-env"
USERNAME = "givbridge-test"
PASSWORD = "givbridge-test-password"  # a throwaway core on 127.0.0.1, gone after the test


def ha_env_dir() -> Path:
    """Where scripts/homeassistant-env puts the core (the same defaults as the script)."""
    configured = os.environ.get("GIVBRIDGE_HA_ENV")
    if configured:
        return Path(configured)
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "givbridge-ha" / HA_VERSION


def ha_python() -> Path | None:
    """The core's Python, when the environment is complete; None otherwise."""
    env = ha_env_dir()
    marker = env / "complete"
    python = env / "venv" / "bin" / "python"
    if marker.is_file() and marker.read_text().strip() == HA_VERSION and os.access(python, os.X_OK):
        return python
    return None


class HaSocket:
    """One authenticated websocket connection to Home Assistant, subscribed to ``state_changed``."""

    def __init__(self, connection: ClientConnection) -> None:
        self._connection = connection
        self._ids = itertools.count(1)
        self._answers: dict[int, asyncio.Future[dict[str, Any]]] = {}
        #: every state_changed event's data ({"entity_id", "old_state", "new_state"}), in order.
        self.changes: list[dict[str, Any]] = []
        #: each entity's latest state as the events (and :meth:`states`) told it; a lookup here
        #: costs nothing, where get_states sends every entity's attributes (megabytes).
        self.current: dict[str, dict[str, Any]] = {}
        self._arrivals = Arrivals()
        self._reader = asyncio.create_task(self._read(), name="home assistant websocket")

    @classmethod
    async def open(cls, port: int, token: str, timeout: float = 10.0) -> HaSocket:
        async with asyncio.timeout(timeout):
            connection = await connect(f"ws://{HOST}:{port}/api/websocket", max_size=None)
            assert json.loads(await connection.recv())["type"] == "auth_required"
            await connection.send(json.dumps({"type": "auth", "access_token": token}))
            answer = json.loads(await connection.recv())
            assert answer["type"] == "auth_ok", answer
            socket = cls(connection)
            await socket.command("subscribe_events", event_type="state_changed")
            return socket

    async def close(self) -> None:
        await self._connection.close()
        self._reader.cancel()
        await asyncio.gather(self._reader, return_exceptions=True)

    async def _read(self) -> None:
        async for raw in self._connection:
            message = json.loads(raw)
            if message.get("type") == "event":
                event = message["event"]
                if event.get("event_type") == "state_changed":
                    data = event["data"]
                    self.changes.append(data)
                    if data.get("new_state") is None:
                        self.current.pop(data["entity_id"], None)
                    else:
                        self.current[data["entity_id"]] = data["new_state"]
                    self._arrivals.notify()
                continue
            answer = self._answers.pop(message.get("id", -1), None)
            if answer is not None and not answer.done():
                answer.set_result(message)
        for answer in self._answers.values():
            if not answer.done():
                answer.set_exception(ConnectionError("home assistant closed the websocket"))

    async def command(self, kind: str, timeout: float = 30.0, **fields: Any) -> Any:
        """Send one websocket command and return its result (AssertionError on an error answer)."""
        number = next(self._ids)
        answer = self._answers[number] = asyncio.get_running_loop().create_future()
        await self._connection.send(json.dumps({"id": number, "type": kind, **fields}))
        async with asyncio.timeout(timeout):
            message = await answer
        assert message.get("success"), f"{kind} {fields}: {message}"
        return message.get("result")

    async def call(self, domain: str, service: str, entity_id: str, **data: Any) -> None:
        """Call a service on one entity, as the frontend does."""
        await self.command(
            "call_service", domain=domain, service=service, service_data=data, target={"entity_id": entity_id}
        )

    def mark(self) -> int:
        """Index of the next state change; pass as ``after=`` to ignore older ones."""
        return len(self.changes)

    async def state_change(
        self, entity_id: str, predicate: Callable[[dict[str, Any]], bool], timeout: float, *, after: int = 0
    ) -> dict[str, Any]:
        """The first new state of ``entity_id`` (from change ``after`` on) that satisfies ``predicate``."""

        def found() -> dict[str, Any] | None:
            for change in self.changes[after:]:
                state = change.get("new_state")
                if change["entity_id"] == entity_id and state is not None and predicate(state):
                    return dict(state)
            return None

        try:
            async with asyncio.timeout(timeout):
                return await self._arrivals.until(found)
        except TimeoutError:
            seen = [c["new_state"]["state"] for c in self.changes[after:] if c["entity_id"] == entity_id]
            raise AssertionError(f"{entity_id}: no matching state within {timeout} s; states seen: {seen}") from None

    async def states(self) -> dict[str, dict[str, Any]]:
        """Every entity's current state, by entity id (asked of HA now)."""
        states = {state["entity_id"]: state for state in await self.command("get_states")}
        self.current.update(states)
        return states


class HomeAssistant:
    """A Home Assistant core process with its config directory; started, onboarded, restarted."""

    def __init__(self, python: Path, config_dir: Path) -> None:
        self.python = python
        self.config_dir = config_dir
        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}"
        self.token: str | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        config_dir.mkdir(parents=True, exist_ok=True)
        # No default_config: a bare core (its default integrations, onboarding among them), the
        # HTTP server on loopback only, and every log line of the MQTT integration.
        (config_dir / "configuration.yaml").write_text(
            f"http:\n  server_host: {HOST}\n  server_port: {self.port}\n"
            "logger:\n  default: warning\n  logs:\n    homeassistant.components.mqtt: info\n"
        )

    @property
    def log_path(self) -> Path:
        return self.config_dir / "home-assistant.log"

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    async def start(self, timeout: float = 180.0) -> None:
        """Start the core and return once its HTTP API answers (every integration set up)."""
        self._proc = subprocess.Popen(
            [str(self.python), "-m", "homeassistant", "--config", str(self.config_dir), "--skip-pip"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        proc = self._proc
        async with httpx.AsyncClient(base_url=self.url, timeout=5) as http:

            async def answers() -> bool:
                if proc.poll() is not None:
                    raise RuntimeError(f"home assistant exited with {proc.returncode}:\n{self.log_text()[-3000:]}")
                try:
                    if self.token is None:
                        return (await http.get("/api/onboarding")).status_code == 200
                    # /api/ answers once the core is running (it answers 503 while starting).
                    response = await http.get("/api/config", headers=self.headers)
                    return response.status_code == 200 and response.json().get("state") == "RUNNING"
                except httpx.TransportError:
                    return False

            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            while not await answers():
                if loop.time() > deadline:
                    raise TimeoutError(f"home assistant did not answer within {timeout} s:\n{self.log_text()[-3000:]}")
                await asyncio.sleep(0.5)  # polling the port: HA announces its start nowhere else

    async def stop(self, timeout: float = 60.0) -> None:
        """SIGTERM (HA's own clean shutdown: the MQTT integration disconnects) and wait."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await wait_until(lambda: proc.poll() is not None, timeout, "home assistant to exit", interval=0.2)
            except TimeoutError:
                proc.kill()
                proc.wait(timeout=10)
        self._proc = None

    @property
    def headers(self) -> dict[str, str]:
        assert self.token is not None, "onboard() first"
        return {"Authorization": f"Bearer {self.token}"}

    async def onboard(self) -> None:
        """Create the owner and finish onboarding through the REST API, as the frontend does;
        keep a long-lived token (an onboarding access token lasts only 30 minutes)."""
        client_id = f"{self.url}/"
        async with httpx.AsyncClient(base_url=self.url, timeout=30) as http:
            user = await http.post(
                "/api/onboarding/users",
                json={"client_id": client_id, "name": "Test", "username": USERNAME, "password": PASSWORD,
                      "language": "en"},
            )  # fmt: skip
            user.raise_for_status()
            tokens = await http.post(
                "/auth/token",
                data={"grant_type": "authorization_code", "code": user.json()["auth_code"], "client_id": client_id},
            )
            tokens.raise_for_status()
            self.token = tokens.json()["access_token"]
            for step, body in (
                ("core_config", {}),
                ("analytics", {}),
                ("integration", {"client_id": client_id, "redirect_uri": f"{client_id}?auth_callback=1"}),
            ):
                (await http.post(f"/api/onboarding/{step}", headers=self.headers, json=body)).raise_for_status()
            steps = (await http.get("/api/onboarding")).json()
            assert all(step["done"] for step in steps), steps
        socket = await HaSocket.open(self.port, self.token)
        try:
            self.token = await socket.command("auth/long_lived_access_token", client_name="givbridge tests", lifespan=1)
        finally:
            await socket.close()

    async def add_mqtt(self, host: str, port: int) -> dict[str, Any]:
        """Set up the MQTT integration through its config flow (the broker step) and return the entry."""
        async with httpx.AsyncClient(base_url=self.url, headers=self.headers, timeout=30) as http:
            flow = await http.post("/api/config/config_entries/flow", json={"handler": "mqtt"})
            flow.raise_for_status()
            form = flow.json()
            assert (form["type"], form["step_id"]) == ("form", "broker"), form
            step = f"/api/config/config_entries/flow/{form['flow_id']}"
            done = await http.post(step, json={"broker": host, "port": port})
            done.raise_for_status()
            entry = done.json()
            assert entry["type"] == "create_entry", entry
            assert entry["result"]["state"] == "loaded", entry
            result: dict[str, Any] = entry["result"]
            return result

    async def socket(self) -> HaSocket:
        assert self.token is not None, "onboard() first"
        return await HaSocket.open(self.port, self.token)

    def mqtt_problems(self) -> list[str]:
        """Warnings and errors HA logged from its MQTT integration (with their continuation lines)."""
        problems: list[str] = []
        keep = False
        for line in self.log_text().splitlines():
            if line[:4].isdigit():  # a new record: "2026-... LEVEL (thread) [logger] message"
                keep = (" WARNING " in line or " ERROR " in line or " CRITICAL " in line) and (
                    "[homeassistant.components.mqtt" in line
                )
            if keep:
                problems.append(line)
        return problems


async def stop_quietly(home_assistant: HomeAssistant) -> None:
    with contextlib.suppress(Exception):
        await home_assistant.stop()
