"""``python -m tidal.capability_matrix.beam_programs record``: record Apache Beam's outputs of the programs."""

from tidal.capability_matrix.beam_programs import main

raise SystemExit(main())
