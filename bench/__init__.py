"""Benchmarks: each module has run() -> str (a markdown table); `python -m bench` runs them all."""
