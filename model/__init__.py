"""The portable pipeline model: a pure description of what is computed, no execution."""
