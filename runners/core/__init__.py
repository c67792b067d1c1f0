"""Semantics shared by every runner: plan, DoFn invocation, windowing, triggers, state."""
