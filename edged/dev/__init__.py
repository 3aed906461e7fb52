"""The development harness: the whole speaker on any machine (rig), the demo, the soak, ALSA file
devices and the test speech.

Used by ``edged demo`` (scripts/demo), scripts/soak, the tests and the benchmarks. The daemon never
imports it: tests/test_imports.py fails if a runtime module does, or if ``edged run`` loads it.
"""
