"""Host-only measurement: eval ksr, eval window, bench latency, the board estimate, the n-gram baseline.

Not shipped to the board (firmware/overlay.py PACKAGES); it may import every board package.
"""
