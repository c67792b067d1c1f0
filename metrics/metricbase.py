"""Metric cells and names at Beam's path ``apache_beam.metrics.metricbase``."""

from tidal.model.metrics import Counter, Distribution, Gauge, MetricName

__all__ = ["Counter", "Distribution", "Gauge", "MetricName"]
