"""Helpers shared by test packages (real browsers, tones, servers)."""
