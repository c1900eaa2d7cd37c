"""The quality gate on synthetic pairs: per-row check columns (checks.py) + the GX suite and gate (gate.py)."""
