"""The warehouse side: the contract (names, types, system columns), dialects, loading."""

CONTRACT_VERSION = 3
