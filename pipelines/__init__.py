"""Job entry points (``run(argv)``) and their PipelineOptions; thin wiring only."""

import logging

# Beam logs a warning about GCP client libraries on import, before any logging is set up;
# Spool uses none of them. A NullHandler keeps it off the console until configure_logging
# (basicConfig(force=True)) installs the real handlers.
logging.getLogger().addHandler(logging.NullHandler())
