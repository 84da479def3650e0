"""Release: gates that prove a candidate (gates.py), the registry of released models with
an atomic `released` pointer (registry.py), and the out-of-process infra check (infra.py)."""
