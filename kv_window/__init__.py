"""kv_window: the W-slot K/V window of the decode step (window.py), its pruning policies, one per
file behind a small strategy interface (policies/), its plain reference twin (reference.py) and
`edgetype eval window` (fidelity.py, cli.py). See docs/kv-window.md."""
from kv_window.policies import POLICIES
from kv_window.window import KVWindow, RollbackTooDeep

__all__ = ["KVWindow", "RollbackTooDeep", "POLICIES"]
