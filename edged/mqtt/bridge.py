"""The MQTT bridge: the speaker and its GPIO devices as one Home Assistant device.

One supervisor task keeps a connection to the broker (aiomqtt on paho-mqtt 2.x): connect with a
retained last will ``offline`` on ``<base>/availability``, publish ``online``, the device
discovery payload and every state, then read commands and write changes until the connection
drops; then wait a capped, jittered backoff (edged.live.backoff) and start again.  A second task
follows the daemon's event stream through the port and keeps the wanted state of every topic.

Nothing queues without bound: the retained state is one slot per topic (the latest value wins, and
after a reconnect every slot is published again); transient messages (button and wake events,
transcripts) are dropped and counted while the broker is away; aiomqtt's incoming queue is capped.

Commands from Home Assistant go through the port (edged.mqtt.port.SpeakerPort): the daemon's own
validation, allow-list and rate limits apply.  A bad or refused command is logged and answered by
re-publishing the true state; nothing from MQTT can raise into the daemon.

Lifecycle: ``MqttBridge(cfg.mqtt, port)``; ``await start()`` (returns at once, also when the
broker is down); ``await reconfigure(new_cfg.mqtt)`` on a reload; ``await stop()`` (publishes
``offline`` and disconnects); ``status()`` for ``edgectl status`` and doctor.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import socket
import ssl
import time
from collections import deque
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from ..config import MqttConfig
from ..errors import ConfigError, EdgedError, ToolError
from ..live.backoff import Backoff
from ..repeats import Repeats
from ..secrets import Secret, register, scrub
from ..supervise import cancel_and_wait
from . import discovery
from .entities import (
    ButtonEventEntity,
    CameraEntity,
    Context,
    Entity,
    GpioEntity,
    SnapshotButton,
    TranscriptSensor,
    WakeEvent,
    build,
)
from .port import SpeakerPort

log = logging.getLogger(__name__)

MAX_PAYLOAD = 4096  # a command payload larger than this is refused unread
TRANSIENT_MAX = 64  # button / wake events waiting to be sent (only while connected)
INCOMING_MAX = 256  # aiomqtt's queue of received messages

Watch = Callable[[Callable[[], Coroutine[Any, Any, None]], str], "asyncio.Task[Any]"]


class MqttBridge:
    def __init__(self, cfg: MqttConfig, port: SpeakerPort, *, config_file: str = "",
                 rediscover_delay_s: tuple[float, float] = (0.5, 2.5), resync_s: float = 30.0,
                 stable_after_s: float = 60.0) -> None:
        self.cfg = cfg
        self.port = port
        self.config_file = config_file
        self.rediscover_delay_s = rediscover_delay_s
        self.resync_s = resync_s
        self.stable_after_s = stable_after_s
        self._ctx = self._context(cfg)
        self._entities: list[Entity] = []
        self._by_command: dict[str, Entity] = {}
        self._by_device: dict[str, GpioEntity] = {}
        self._published_cmps: dict[str, dict[str, Any]] = {}  # component id -> config, as last built
        self._tombstones: dict[str, str] = {}  # removed component id -> platform
        self._dirty: dict[str, str | bytes] = {}  # retained topic -> latest payload to publish
        self._sent: dict[str, str | bytes] = {}  # retained topic -> payload the broker has from us
        self._transient: deque[tuple[str, str | bytes]] = deque(maxlen=TRANSIENT_MAX)
        self._wake = asyncio.Event()
        self._client: Any = None
        self._connected = False
        self._supervisor: asyncio.Task[None] | None = None
        self._follower: asyncio.Task[None] | None = None
        self._watch: Watch | None = None
        self._timers: set[asyncio.TimerHandle] = set()
        self._bg: set[asyncio.Task[Any]] = set()
        self._since: float | None = None
        self._next_retry: float | None = None
        self.last_error: str | None = None
        self._repeats = Repeats()  # "cannot connect" lines: once per reason, then a reminder
        self.stats = {"connects": 0, "published": 0, "commands": 0, "refused": 0, "dropped": 0,
                      "rediscoveries": 0}

    # ---- lifecycle --------------------------------------------------------------------------------
    async def start(self, watch: Watch | None = None) -> None:
        """Start following the daemon and (when enabled) the connection loop; never waits for the broker.
        ``watch(factory, name)``: the daemon's supervisor (edged.supervise), which reports and restarts
        either task if it crashes; without it (a test rig) they are plain tasks."""
        self._watch = watch
        self._rebuild()
        if self._follower is None:
            self._follower = self._task(self._follow, "mqtt-events")
        if self.cfg.enabled and self._supervisor is None:
            self._supervisor = self._task(self._supervise, "mqtt")
            log.info("mqtt: Home Assistant bridge for %s via %s", self._ctx.device_id, self.broker)

    async def stop(self, timeout: float = 3.0) -> None:
        """Publish ``offline``, disconnect and end both tasks within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        await self._close_connection(deadline)
        if self._follower is not None:
            if not await cancel_and_wait(self._follower, max(0.1, deadline - time.monotonic())):
                log.warning("mqtt: the event follower did not end in time")
            self._follower = None
        for h in self._timers:
            h.cancel()
        self._timers.clear()

    async def reconfigure(self, cfg: MqttConfig) -> bool:
        """Apply a new [mqtt] section: reconnect when it changed.  Returns whether anything changed."""
        if cfg == self.cfg:
            return False
        old_topic = discovery.discovery_topic(self.cfg.discovery_prefix, self._ctx.device_id)
        new_ctx = self._context(cfg)
        moved = old_topic != discovery.discovery_topic(cfg.discovery_prefix, new_ctx.device_id)
        await self._close_connection(time.monotonic() + 3.0, forget_discovery=moved)
        self.cfg, self._ctx = cfg, new_ctx
        self._published_cmps.clear()
        self._sent.clear()
        self._dirty.clear()
        self._rebuild()
        if cfg.enabled:
            self._supervisor = self._task(self._supervise, "mqtt")
        log.info("mqtt: reconfigured (%s)", "connecting to " + self.broker if cfg.enabled else "disabled")
        return True

    async def _close_connection(self, deadline: float, forget_discovery: bool = False) -> None:
        client, task = self._client, self._supervisor
        if client is not None and self._connected:
            try:
                if forget_discovery:  # the device moves to another discovery topic: remove the old one
                    await client.publish(self._discovery_topic, b"", qos=1, retain=True,
                                         timeout=max(0.1, deadline - time.monotonic()))
                await client.publish(self._availability, "offline", qos=1, retain=True,
                                     timeout=max(0.1, deadline - time.monotonic()))
            except Exception as exc:  # the broker is already gone: the will says offline
                log.debug("mqtt: offline not published: %s", exc)
        if task is not None and not await cancel_and_wait(task, max(0.1, deadline - time.monotonic())):
            log.warning("mqtt: the connection task did not end in time; left behind")
        self._supervisor = None
        self._client = None
        self._connected = False

    # ---- status -----------------------------------------------------------------------------------
    @property
    def broker(self) -> str:
        return f"{self.cfg.host}:{self.cfg.broker_port}"

    @property
    def connected(self) -> bool:
        return self._connected

    def status(self) -> dict[str, Any]:
        """For edgectl status and doctor: never a credential."""
        now = time.monotonic()
        return {
            "enabled": self.cfg.enabled,
            "connected": self._connected,
            "broker": self.broker if self.cfg.host else None,
            "tls": self.cfg.tls,
            "device_id": self._ctx.device_id,
            "base_topic": self._ctx.base,
            "discovery_topic": self._discovery_topic,
            "entities": len(self._entities),
            "connected_for_s": round(now - self._since, 1) if self._connected and self._since else None,
            "next_retry_in_s": (round(max(0.0, self._next_retry - now), 1)
                                if not self._connected and self._next_retry else None),
            "last_error": self.last_error,
            **self.stats,
        }

    # ---- topics and entities ----------------------------------------------------------------------
    @staticmethod
    def _context(cfg: MqttConfig) -> Context:
        device_id = cfg.device_id or discovery.device_id_default()
        return Context(device_id=device_id, base=cfg.base_topic or f"edged/{device_id}",
                       share_transcripts=cfg.share_transcripts, camera=cfg.camera)

    @property
    def _availability(self) -> str:
        return f"{self._ctx.base}/availability"

    @property
    def _discovery_topic(self) -> str:
        return discovery.discovery_topic(self.cfg.discovery_prefix, self._ctx.device_id)

    @property
    def _ha_status(self) -> str:
        return f"{self.cfg.discovery_prefix}/status"

    def _device_name(self) -> str:
        return self.cfg.device_name or f"edged on {socket.gethostname()}"

    def _rebuild(self) -> None:
        """(Re)build the entities from the port's devices; removed components become tombstones."""
        self._entities = build(self._ctx, self.port.gpio_devices())
        self._by_command = {e.command_topic: e for e in self._entities if e.command_topic}
        self._by_device = {e.dev.name: e for e in self._entities if isinstance(e, GpioEntity)}
        current = {e.cmp_id: e.config() for e in self._entities}
        removed = {cid: cfg for cid, cfg in self._published_cmps.items() if cid not in current}
        self._bury(removed)
        self._published_cmps = current
        self._tombstones = {cid: p for cid, p in self._tombstones.items() if cid not in current}
        self._queue_discovery()
        self._refresh(force=False)
        if self._client is not None and self._connected:
            self._spawn(self._resubscribe(self._client))

    def _bury(self, removed: dict[str, dict[str, Any]]) -> None:
        """Tombstones for removed components, and their retained state topics cleared."""
        for cid, cfg in removed.items():
            self._tombstones[cid] = cfg.get("p", "")
            topics = [cfg.get(k) for k in ("state_topic", "json_attributes_topic", "topic")]
            topics += [a.get("topic") for a in cfg.get("availability", []) if isinstance(a, dict)]
            for t in topics:
                if isinstance(t, str) and t.startswith(self._ctx.base + "/") and t != self._availability:
                    self._set(t, b"", force=True)
            log.info("mqtt: component %s removed from the device", cid)

    def _queue_discovery(self, force: bool = False) -> None:
        doc = discovery.payload(self._entities, device_id=self._ctx.device_id, device_name=self._device_name(),
                                base=self._ctx.base, tombstones=self._tombstones)
        self._set(self._discovery_topic, json.dumps(doc, separators=(",", ":")), force=force, first=True)

    def _set(self, topic: str, payload: str | bytes, *, force: bool = False, first: bool = False) -> None:
        """Want ``payload`` retained on ``topic``: only the latest wanted value is kept."""
        if not force and self._sent.get(topic) == payload and topic not in self._dirty:
            return
        if first and topic not in self._dirty:
            self._dirty = {topic: payload, **self._dirty}
        else:
            self._dirty[topic] = payload
        self._wake.set()

    def _emit(self, topic: str, payload: str | bytes) -> None:
        """A transient (not retained) message: dropped, and counted, while the broker is away."""
        if not self._connected:
            self.stats["dropped"] += 1
            return
        if len(self._transient) == self._transient.maxlen:
            self.stats["dropped"] += 1
        self._transient.append((topic, payload))
        self._wake.set()

    def _refresh(self, force: bool = False, entities: list[Entity] | None = None) -> None:
        for ent in entities if entities is not None else self._entities:
            try:
                for topic, payload in ent.states(self.port):
                    self._set(topic, payload, force=force)
            except Exception:  # a port read must not stop the others
                log.exception("mqtt: reading the state of %s failed", ent.key)

    # ---- the daemon's events ----------------------------------------------------------------------
    async def _follow(self) -> None:
        sub = self.port.subscribe()
        loop = asyncio.get_running_loop()
        next_resync = loop.time() + self.resync_s
        try:
            while True:
                try:
                    async with asyncio.timeout_at(next_resync):  # (3.11's wait_for can lose a cancel)
                        ev = await sub.get()
                except TimeoutError:
                    self._refresh()
                    next_resync = loop.time() + self.resync_s
                    continue
                if ev is None:
                    return
                try:
                    self._on_event(ev)
                except Exception:
                    log.exception("mqtt: handling the event %s failed", ev.get("event"))
        finally:
            self.port.unsubscribe(sub)

    def _on_event(self, ev: dict[str, Any]) -> None:
        kind = ev.get("event")
        if kind == "gpio":
            ent = self._by_device.get(str(ev.get("name")))
            if ent is None:
                return
            if isinstance(ent, ButtonEventEntity) and "by" not in ev:
                self._emit(ent.topic, ent.event(ev.get("value")))
            self._refresh(entities=[ent])
        elif kind == "wake":
            if "model" in ev:  # a wake word detection (turns opened otherwise are not)
                for ent in self._entities:
                    if isinstance(ent, WakeEvent):
                        self._emit(ent.topic, ent.event(ev))
        elif kind == "transcript":
            for ent in self._entities:
                if isinstance(ent, TranscriptSensor):
                    for topic, payload in ent.messages(ev):
                        self._emit(topic, payload)
        elif kind == "reloaded":
            self._rebuild()
        else:  # state, mute, connection, error, recovered, device, timer(s), volume, dropped: the speaker's entities
            self._refresh(entities=[e for e in self._entities if not isinstance(e, GpioEntity)]
                          if kind != "dropped" else None)

    # ---- the connection ---------------------------------------------------------------------------
    async def _supervise(self) -> None:
        backoff = Backoff(self.cfg.backoff_initial_s, self.cfg.backoff_max_s, self.stable_after_s)
        while True:
            said = True
            try:
                await self._session(backoff)
            except asyncio.CancelledError:
                raise
            except ConfigError as exc:
                said = self._failed(str(exc))
            except Exception as exc:  # MqttError, OSError, ssl errors: retried
                said = self._failed(_describe(exc))
            finally:
                self._client = None
                self._connected = False
            backoff.disconnected()
            delay = backoff.next_delay()
            self._next_retry = time.monotonic() + delay
            # with the failure's line only: a broker down for a week is not a line every retry
            log.log(logging.INFO if said else logging.DEBUG, "mqtt: reconnecting to %s in %.1f s", self.broker, delay)
            await asyncio.sleep(delay)

    def _failed(self, message: str) -> bool:
        """Log why the connection ended or could not be made; False when that line was held back
        (the same reason again, edged.repeats)."""
        message = scrub(message)
        self.last_error = message
        if self._connected:
            if self._since is not None and time.monotonic() - self._since >= self.stable_after_s:
                self._repeats.clear()  # it had been up a while: this loss, and what follows, is news
            # a link that keeps dropping soon after it is made (two speakers with one client id: the
            # broker takes the session from the other each time) is said once, then as a reminder
            say, held = self._repeats.seen("lost")  # whatever the words: they vary as it flaps
            if say:
                log.warning("mqtt: connection to %s lost: %s%s", self.broker, message, Repeats.more(held))
            return say
        say, held = self._repeats.seen(message)
        if say:
            log.warning("mqtt: cannot connect to %s: %s%s", self.broker, message, Repeats.more(held))
        return say

    async def _session(self, backoff: Backoff) -> None:
        import aiomqtt

        cfg = self.cfg
        password = await asyncio.to_thread(self._password)
        tls = await asyncio.to_thread(self._tls_context) if cfg.tls else None
        client = aiomqtt.Client(
            cfg.host, cfg.broker_port,
            username=cfg.username or None,
            password=password.reveal() if password is not None else None,
            identifier=cfg.client_id or f"edged-{self._ctx.device_id}",
            will=aiomqtt.Will(self._availability, "offline", qos=1, retain=True),
            keepalive=cfg.keepalive_s, tls_context=tls, timeout=10,
            max_queued_incoming_messages=INCOMING_MAX, max_queued_outgoing_messages=INCOMING_MAX * 4,
            logger=logging.getLogger(__name__ + ".client"),
            # small messages both ways: without this, Nagle holds a command's PUBACK or a state behind
            # the broker's delayed ACK (measured here: about +20 ms per command, bench/bench_mqtt.py)
            socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
        )
        async with client:
            self._client, self._connected, self._since = client, True, time.monotonic()
            self._next_retry = None
            self.stats["connects"] += 1
            backoff.connected()
            if self._repeats.seen("connected")[0]:  # once while the link keeps dropping
                if self.last_error:
                    log.info("mqtt: connected to %s (after: %s)", self.broker, self.last_error)
                else:
                    log.info("mqtt: connected to %s", self.broker)
            self.last_error = None
            await self._subscribe(client)
            await client.publish(self._availability, "online", qos=1, retain=True)
            # the broker may have lost everything (a restart without persistence): publish it all again
            self._sent.clear()
            self._queue_discovery(force=True)
            self._refresh(force=True)
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._reader(client))
                tg.create_task(self._writer(client))

    async def _subscribe(self, client: Any) -> None:
        topics = [(t, 1) for t in sorted(self._by_command)]
        topics += [(self._ha_status, 1), (self._discovery_topic, 1)]
        await client.subscribe(topics)

    async def _resubscribe(self, client: Any) -> None:
        try:
            await self._subscribe(client)
        except Exception as exc:  # the connection dropped: the next one subscribes anew
            log.debug("mqtt: subscribing after a reload failed: %s", exc)

    async def _reader(self, client: Any) -> None:
        async for msg in client.messages:
            _raise_if_cancelled()
            try:
                await self._on_message(str(msg.topic), msg.payload, bool(msg.retain))
            except Exception:
                log.exception("mqtt: handling a message on %s failed", msg.topic)

    async def _writer(self, client: Any) -> None:
        while True:
            _raise_if_cancelled()
            await self._wake.wait()
            self._wake.clear()
            while self._dirty or self._transient:
                if self._dirty:
                    topic = next(iter(self._dirty))
                    payload = self._dirty.pop(topic)
                    # counted as sent while in flight, so a refresh meanwhile does not send it twice
                    # (a failed publish ends the connection, and the next one forgets _sent)
                    if payload in (b"", ""):
                        self._sent.pop(topic, None)
                    else:
                        self._sent[topic] = payload
                    try:
                        await client.publish(topic, payload, qos=1, retain=True, timeout=10)
                    except BaseException:
                        self._dirty.setdefault(topic, payload)  # kept (unless superseded) for the next connection
                        raise
                else:
                    topic, payload = self._transient.popleft()
                    await client.publish(topic, payload, qos=1, retain=False, timeout=10)
                self.stats["published"] += 1
                _raise_if_cancelled()

    # ---- messages from the broker -----------------------------------------------------------------
    async def _on_message(self, topic: str, raw: Any, retained: bool) -> None:
        data = raw if isinstance(raw, bytes | bytearray) else str(raw or "").encode()
        if topic == self._ha_status:
            if data.strip() == b"online":
                self._schedule_rediscovery()
            return
        if topic == self._discovery_topic:
            if retained:  # what the broker kept from before this connection
                self._adopt_retained(bytes(data))
            return
        ent = self._by_command.get(topic)
        if ent is not None:
            await self._command(ent, bytes(data))

    def _schedule_rediscovery(self) -> None:
        lo, hi = self.rediscover_delay_s
        delay = lo + random.random() * max(0.0, hi - lo)
        loop = asyncio.get_running_loop()
        handle: asyncio.TimerHandle

        def fire() -> None:
            self._timers.discard(handle)
            self.stats["rediscoveries"] += 1
            log.info("mqtt: Home Assistant came online: discovery, availability and state published again")
            self._queue_discovery(force=True)
            if self._connected:  # (retained already; a Home Assistant that lost it gets it again)
                self._set(self._availability, "online", force=True)
            self._refresh(force=True)

        handle = loop.call_later(delay, fire)
        self._timers.add(handle)

    def _adopt_retained(self, data: bytes) -> None:
        """Components an earlier run declared that this configuration lacks: remove them."""
        try:
            doc = json.loads(data.decode("utf-8")) if data else {}
        except ValueError:
            return
        stale = {cid: cfg for cid, cfg in (doc.get("cmps") or {}).items()
                 if cid in discovery.live_components(doc) and cid not in self._published_cmps}
        if stale:
            self._bury(stale)
            self._queue_discovery(force=True)

    async def _command(self, ent: Entity, data: bytes) -> None:
        self.stats["commands"] += 1
        ok = False
        try:
            if len(data) > MAX_PAYLOAD:
                raise ToolError(f"payload of {len(data)} bytes is too large (at most {MAX_PAYLOAD})")
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:
                raise ToolError("payload is not UTF-8 text") from None
            if isinstance(ent, SnapshotButton):
                await self._snapshot(ent, text)
            else:
                await ent.command(text, self.port)
            ok = True
        except ToolError as exc:  # a bad payload, a refused value, a rate limit, not allowed
            self.stats["refused"] += 1
            log.warning("mqtt: %s: command refused: %s", ent.name, scrub(str(exc)))
        except EdgedError as exc:  # muted, device failed, no camera...
            self.stats["refused"] += 1
            log.warning("mqtt: %s: command failed: %s", ent.name, scrub(str(exc)))
        except Exception:
            self.stats["refused"] += 1
            log.exception("mqtt: %s: command failed", ent.name)
        finally:
            # the truth, again: after a refusal Home Assistant must not keep showing what it asked for
            self._refresh(force=not ok, entities=[ent])

    async def _snapshot(self, ent: SnapshotButton, text: str) -> None:
        if text.strip() != "PRESS":
            raise ToolError(f"expected PRESS, got {text[:40]!r}")
        jpeg = await self.port.snapshot()
        cam: CameraEntity = ent.camera
        self._emit(cam.topic, jpeg)

    # ---- credentials ------------------------------------------------------------------------------
    def _password(self) -> Secret | None:
        path = self.cfg.password_file
        if not path:
            return None
        try:
            value = Path(path).read_text(encoding="utf-8").strip("\r\n")
        except OSError as exc:
            raise ConfigError(self.config_file or "config", "mqtt.password_file",
                              f"cannot read {path}: {exc.strerror or exc}") from None
        if not value:
            raise ConfigError(self.config_file or "config", "mqtt.password_file", f"{path} is empty")
        secret = Secret(value, path)
        register(secret)  # the logging filter scrubs it from any message
        return secret

    def _tls_context(self) -> ssl.SSLContext:
        cfg = self.cfg
        try:
            ctx = ssl.create_default_context(cafile=cfg.ca_file or None)
            if cfg.cert_file:
                ctx.load_cert_chain(cfg.cert_file, cfg.key_file)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(self.config_file or "config", "mqtt.ca_file" if not cfg.cert_file else "mqtt.cert_file",
                              f"cannot load the TLS files: {exc}") from None
        return ctx

    def _task(self, factory: Callable[[], Coroutine[Any, Any, None]], name: str) -> asyncio.Task[Any]:
        if self._watch is not None:
            try:
                return self._watch(factory, name)
            except RuntimeError as exc:  # the last one did not end in time (logged): this one runs unwatched
                log.warning("mqtt: %s: %s", name, exc)
        return asyncio.create_task(factory(), name=f"edged-{name}")

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._bg.add(task)
        task.add_done_callback(self._bg.discard)


def _raise_if_cancelled() -> None:
    """Honour a cancel that aiomqtt's ``publish`` swallowed: it waits with 3.11's ``wait_for``, which
    returns the result when the PUBACK and the cancel arrive together (CPython gh-86296), leaving the
    task running with ``cancelling()`` set.  Checked wherever the reader and writer loop around."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


def _describe(exc: BaseException) -> str:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:  # from the reader/writer TaskGroup
        exc = exc.exceptions[0]
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if not text.startswith(type(exc).__name__) else text

