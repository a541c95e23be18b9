"""Beam PTransforms and DoFns: Kafka source, decode, shape, batch, write, commit, load."""
