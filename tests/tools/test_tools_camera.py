"""Camera: synthetic JPEG frames, size and quality, LED, failures, picamera2 missing on x86."""

from __future__ import annotations

import io

import numpy as np
import pytest
from gpiozero import LED
from PIL import Image

from edged.config import CameraConfig
from edged.errors import DeviceError
from edged.tools.camera import Camera, fit


def decode(jpeg: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(jpeg))
    img.load()
    return img


@pytest.mark.parametrize("max_side", [64, 320, 768])
async def test_synthetic_frames_are_jpegs_of_the_configured_size(max_side):
    cam = Camera(CameraConfig(backend="synthetic", max_side=max_side, quality=70))
    cam.start()
    try:
        a, b = await cam.snapshot(), await cam.snapshot()
        assert cam.status()["frames"] == 2 and cam.status()["ok"] is True
    finally:
        cam.stop()
    assert cam.status()["running"] is False
    img = decode(a)
    assert img.format == "JPEG" and img.mode == "RGB"
    assert max(img.size) == max_side and img.size == (max_side, max_side * 3 // 4)
    assert a != b  # the pattern moves
    diff = np.abs(np.asarray(decode(a), np.int16) - np.asarray(decode(b), np.int16))
    assert diff.max() > 100  # a visible change, not encoder noise


async def test_jpeg_is_420_and_quality_matters():
    sizes = {}
    for q in (20, 95):
        cam = Camera(CameraConfig(backend="synthetic", max_side=320, quality=q))
        cam.start()
        jpeg = await cam.snapshot()
        cam.stop()
        img = decode(jpeg)
        # 4:2:0: luma sampled 2x2, chroma 1x1
        assert img.layer[0][1:3] == (2, 2) and img.layer[1][1:3] == (1, 1)
        sizes[q] = len(jpeg)
    assert sizes[20] < sizes[95]


def test_fit_shrinks_big_frames():
    big = np.zeros((1080, 1920, 3), np.uint8)
    assert fit(big, 768).shape[:2] == (432, 768)
    small = np.zeros((100, 80, 3), np.uint8)
    assert fit(small, 768) is small


async def test_camera_led_on_while_taking_frames(factory):
    led = LED(12, pin_factory=factory)
    seen = []
    cam = Camera(CameraConfig(backend="synthetic", max_side=64), led=led)
    cam.start()
    orig = cam._backend.capture

    def capture():
        seen.append(factory.pin(12).state)
        return orig()

    cam._backend.capture = capture
    await cam.snapshot()
    assert seen == [1] and factory.pin(12).state == 0
    with cam.hold():
        await cam.snapshot()
        assert factory.pin(12).state == 1  # held on across frames
    assert seen == [1, 1] and factory.pin(12).state == 0
    factory.pin(12).assert_states([0, 1, 0, 1, 0])
    cam.stop()


async def test_led_may_be_a_function(factory):
    led = LED(12, pin_factory=factory)
    cam = Camera(CameraConfig(backend="synthetic", max_side=64), led=lambda: led)
    cam.start()
    await cam.snapshot()
    cam.stop()
    factory.pin(12).assert_states([0, 1, 0])


async def test_injected_failure_and_repair():
    cam = Camera(CameraConfig(backend="synthetic", max_side=64))
    cam.start()
    cam.break_()
    with pytest.raises(DeviceError, match=r"camera \(synthetic\): camera failure \(injected\)"):
        await cam.snapshot()
    assert cam.status()["ok"] is False and cam.status()["errors"] == 1
    cam.repair()
    assert (await cam.snapshot())[:2] == b"\xff\xd8"
    cam.stop()


async def test_not_started_and_none_backend():
    with pytest.raises(DeviceError, match="is not started"):
        await Camera(CameraConfig(backend="synthetic")).snapshot()
    cam = Camera(CameraConfig(backend="none"))
    cam.start()
    with pytest.raises(DeviceError, match="no camera is configured"):
        await cam.snapshot()
    assert cam.status()["backend"] == "none"


def test_picamera2_missing_is_a_clear_error():
    try:
        import picamera2  # noqa: F401
    except ImportError:
        pass
    else:  # pragma: no cover - on a Pi
        pytest.skip("picamera2 is installed here")
    cam = Camera(CameraConfig(backend="picamera2"))
    with pytest.raises(DeviceError, match="picamera2 is not installed: on Raspberry Pi OS apt install "
                                          "python3-picamera2 and use a venv with --system-site-packages"):
        cam.start()
