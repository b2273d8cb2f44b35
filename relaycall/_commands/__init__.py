"""Typed commands for every command of ``POST /api/calling/calls``."""
