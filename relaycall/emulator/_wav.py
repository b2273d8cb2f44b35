"""
Recordings as real WAV files: 8 kHz, 16-bit, mono silence of the recorded length.
"""

from __future__ import annotations

import struct

__all__ = ["CHANNELS", "RATE", "WIDTH", "frames_for", "wav_header", "wav_size"]

RATE = 8000
WIDTH = 2
CHANNELS = 1
HEADER_SIZE = 44


def frames_for(seconds: float) -> int:
    """How many sample frames *seconds* of audio hold."""
    return max(0, round(seconds * RATE))


def wav_size(frames: int) -> int:
    """The file size in bytes of a WAV of *frames* frames."""
    return HEADER_SIZE + frames * WIDTH * CHANNELS


def wav_header(frames: int) -> bytes:
    """The 44-byte RIFF/WAVE header for *frames* frames of PCM."""
    data = frames * WIDTH * CHANNELS
    return (
        b"RIFF"
        + struct.pack("<I", 36 + data)
        + b"WAVE"
        + b"fmt "
        + struct.pack(
            "<IHHIIHH", 16, 1, CHANNELS, RATE, RATE * WIDTH * CHANNELS, WIDTH * CHANNELS, WIDTH * 8
        )
        + b"data"
        + struct.pack("<I", data)
    )
