"""Benchmarks: relaycall beside a bare aiohttp client and the SignalWire SDK (see README.md)."""
