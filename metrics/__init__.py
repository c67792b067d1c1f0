"""User metrics at Beam's path ``apache_beam.metrics``.

>>> from tidal.metrics import Metrics, MetricsFilter
>>> Metrics.counter("wordcount", "words").metric_name.name
'words'
"""

from tidal.metrics.metric import Metrics, MetricsFilter

__all__ = ["Metrics", "MetricsFilter"]
