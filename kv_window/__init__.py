"""kv_window: the W-slot K/V window of the decode step (window.py), its pruning policies, one per
file behind a small strategy interface (policies/), and its plain reference twin (reference.py).
`edgetype eval window` / `bench window` are host tooling: measure/window_fidelity.py, measure/cli_window.py.
See docs/kv-window.md."""
from kv_window.policies import POLICIES
from kv_window.window import KVWindow, RollbackTooDeep

__all__ = ["KVWindow", "RollbackTooDeep", "POLICIES"]
