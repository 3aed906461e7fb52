"""The camera: picamera2 on a Pi, a synthetic test pattern for simulation, or none.

``snapshot()`` takes one frame and encodes it as a JPEG (4:2:0, ``cfg.quality``,
at most ``cfg.max_side`` pixels on the long side) in a worker thread, so the
event loop never waits on the sensor or the encoder.  A configured camera LED
(a gpiozero LED from the GPIO bank) is on while frames are taken; ``hold()``
keeps it on across several frames (``watch``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from ..config import CameraConfig
from ..errors import DeviceError

log = logging.getLogger(__name__)

PICAMERA2_MISSING = ("picamera2 is not installed: on Raspberry Pi OS apt install python3-picamera2 "
                     "and use a venv with --system-site-packages")


def frame_size(max_side: int) -> tuple[int, int]:
    """(width, height) of a 4:3 frame whose long side is ``max_side`` (even numbers, for 4:2:0)."""
    w = max_side - max_side % 2
    h = (max_side * 3 // 4) - (max_side * 3 // 4) % 2
    return w, h


def encode_jpeg(rgb: np.ndarray, quality: int) -> bytes:
    """RGB uint8 (h, w, 3) -> JPEG, 4:2:0."""
    import simplejpeg

    return simplejpeg.encode_jpeg(np.ascontiguousarray(rgb), quality=quality, colorspace="RGB",
                                  colorsubsampling="420")


def fit(rgb: np.ndarray, max_side: int) -> np.ndarray:
    """Shrink so the long side is at most ``max_side`` (keeps the aspect ratio)."""
    h, w = rgb.shape[:2]
    if max(h, w) <= max_side:
        return rgb
    from PIL import Image

    scale = max_side / max(h, w)
    size = (max(2, round(w * scale)), max(2, round(h * scale)))
    return np.asarray(Image.fromarray(rgb).resize(size, Image.BILINEAR))


class _Synthetic:
    """A test pattern: colour bars, a square that moves every frame and a binary frame counter."""

    def __init__(self, size: tuple[int, int]) -> None:
        self.w, self.h = size
        self.n = 0
        x = np.linspace(0, 255, self.w, dtype=np.float32)
        y = np.linspace(0, 255, self.h, dtype=np.float32)[:, None]
        self.base = np.empty((self.h, self.w, 3), np.uint8)
        self.base[..., 0] = x[None, :].astype(np.uint8)
        self.base[..., 1] = np.broadcast_to(y, (self.h, self.w)).astype(np.uint8)
        self.base[..., 2] = 128

    def capture(self) -> np.ndarray:
        self.n += 1
        img = self.base.copy()
        side = max(4, min(self.w, self.h) // 5)
        step = max(1, self.w // 16)
        x0 = (self.n * step) % max(1, self.w - side)
        y0 = (self.n * step // 2) % max(1, self.h - side)
        img[y0:y0 + side, x0:x0 + side] = (255, 255, 255)
        # frame counter (and a time tick) as a row of black/white blocks along the bottom edge
        bits = self.n ^ (int(time.monotonic() * 10) << 16)
        bw = max(2, self.w // 40)
        bh = max(2, self.h // 24)
        for i in range(min(32, self.w // bw)):
            img[self.h - bh:, i * bw:(i + 1) * bw] = 255 if (bits >> i) & 1 else 0
        return img

    def close(self) -> None:
        pass


class _Picamera2:
    def __init__(self, size: tuple[int, int]) -> None:
        try:
            from picamera2 import Picamera2  # type: ignore[import-not-found]
        except ImportError as exc:
            raise DeviceError(PICAMERA2_MISSING) from exc
        try:
            self.cam = Picamera2()
            # "BGR888" gives numpy arrays in R, G, B order
            self.cam.configure(self.cam.create_still_configuration(main={"size": size, "format": "BGR888"}))
            self.cam.start()
        except Exception as exc:
            raise DeviceError(f"camera (picamera2): cannot start: {exc}") from exc

    def capture(self) -> np.ndarray:
        return self.cam.capture_array("main")[..., :3]

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.cam.stop()
        self.cam.close()


class Camera:
    def __init__(self, cfg: CameraConfig, led: Any = None) -> None:
        """``led``: a gpiozero LED, a function returning one (or None), or None."""
        self.cfg = cfg
        self.led = led
        self._backend: Any = None
        self._lock = threading.Lock()  # one capture at a time
        self._led_lock = threading.Lock()
        self._holders = 0
        self._broken: str | None = None
        self.frames = 0
        self.errors = 0
        self.last_error: str | None = None
        self.last_width = 0
        self.last_height = 0

    @property
    def enabled(self) -> bool:
        return self.cfg.backend != "none"

    def start(self) -> None:
        size = frame_size(self.cfg.max_side)
        if self.cfg.backend == "synthetic":
            self._backend = _Synthetic(size)
        elif self.cfg.backend == "picamera2":
            self._backend = _Picamera2(size)
        log.info("camera: backend %s, %dx%d", self.cfg.backend, *size)

    def stop(self) -> None:
        backend, self._backend = self._backend, None
        if backend is not None:
            try:
                backend.close()
            except Exception as exc:
                log.warning("camera: closing: %s", exc)
        self._led(False, force=True)

    def break_(self, reason: str = "camera failure (injected)") -> None:
        """Make every following snapshot fail (tests and soak runs)."""
        self._broken = reason

    def repair(self) -> None:
        self._broken = None

    async def snapshot(self) -> bytes:
        """One JPEG frame. Raises DeviceError with a clear message."""
        if not self.enabled:
            raise DeviceError("no camera is configured (camera.backend = none)")
        return await asyncio.to_thread(self._snapshot)

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        """Keep the camera LED on across several snapshots."""
        self._led(True)
        try:
            yield
        finally:
            self._led(False)

    def status(self) -> dict[str, Any]:
        return {"backend": self.cfg.backend, "running": self._backend is not None,
                "ok": self._broken is None and (self._backend is not None or not self.enabled),
                "frames": self.frames, "errors": self.errors, "last_error": self._broken or self.last_error,
                "size": [self.last_width, self.last_height] if self.frames else list(frame_size(self.cfg.max_side))}

    # internals -----------------------------------------------------------------
    def _snapshot(self) -> bytes:
        with self.hold(), self._lock:
            try:
                if self._broken:
                    raise DeviceError(f"camera ({self.cfg.backend}): {self._broken}")
                if self._backend is None:
                    raise DeviceError(f"camera ({self.cfg.backend}) is not started")
                try:
                    rgb = fit(self._backend.capture(), self.cfg.max_side)
                    jpeg = encode_jpeg(rgb, self.cfg.quality)
                except Exception as exc:
                    raise DeviceError(f"camera ({self.cfg.backend}): taking a frame failed: {exc}") from exc
            except DeviceError as exc:
                self.errors += 1
                self.last_error = str(exc)
                raise
            self.frames += 1
            self.last_height, self.last_width = rgb.shape[:2]
            return jpeg

    def _led(self, on: bool, force: bool = False) -> None:
        with self._led_lock:
            if force:
                self._holders = 0
            else:
                self._holders += 1 if on else -1
            want = self._holders > 0
            try:
                # the LED, or a function returning it (the GPIO bank rebuilds failed devices)
                led = self.led if self.led is None or hasattr(self.led, "on") else self.led()
                if led is None:
                    return
                if want:
                    led.on()
                else:
                    led.off()
            except Exception as exc:  # a closed or failed LED never stops the camera
                log.debug("camera: LED: %s", exc)
