"""Job entry points (``run(argv)``) and their PipelineOptions; thin wiring only."""
