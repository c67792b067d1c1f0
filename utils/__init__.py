"""Utilities at Beam's path ``apache_beam.utils`` (:mod:`tidal.utils.timestamp`)."""
