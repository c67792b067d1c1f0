"""The direct runner at Beam's path ``apache_beam.runners.direct.direct_runner``.

Beam's local runners (``DirectRunner``, ``BundleBasedDirectRunner``,
``SwitchingDirectRunner``) are all tidal's one direct runner here, as the
``--runner`` flag maps their names too.

>>> BundleBasedDirectRunner is DirectRunner
True
"""

from tidal.runners.direct.runner import DirectRunner

BundleBasedDirectRunner = DirectRunner
SwitchingDirectRunner = DirectRunner

__all__ = ["BundleBasedDirectRunner", "DirectRunner", "SwitchingDirectRunner"]
