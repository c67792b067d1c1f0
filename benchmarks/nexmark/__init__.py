"""Nexmark for tidal: a seeded event generator and the queries as portable pipelines."""

from tidal.benchmarks.nexmark.generator import Auction, Bid, NexmarkConfig, Person, generate, generate_values, to_arrow
from tidal.benchmarks.nexmark.queries import QUERIES

__all__ = ["Auction", "Bid", "NexmarkConfig", "Person", "QUERIES", "generate", "generate_values", "to_arrow"]
