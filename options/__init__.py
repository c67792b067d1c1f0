"""Pipeline options at Beam's path ``apache_beam.options`` (:mod:`tidal.options.pipeline_options`)."""
