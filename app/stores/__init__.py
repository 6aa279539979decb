"""Shared fast state behind one interface, memory:// or redis://: throttle, revoked sessions."""
