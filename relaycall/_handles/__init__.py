"""Handles: Call and one class per long-running operation."""
