"""System models: given a replication's requests, when does each one get its first token.

`trace.py` holds what an engine returns; `simpy_exclusive.py` is the seed's model in SimPy, the
reference every faster engine is checked against.
"""
