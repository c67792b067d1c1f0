"""Metrics, MetricsFilter and MetricResults at Beam's path ``apache_beam.metrics.metric``."""

from tidal.model.metrics import MetricResults, Metrics, MetricsFilter

__all__ = ["MetricResults", "Metrics", "MetricsFilter"]
