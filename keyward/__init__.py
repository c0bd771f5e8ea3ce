"""Operator commands for a keyward deployment (``python -m keyward``)."""
