"""Data: IK problems, their distance graphs, and the files that store them.

``problems`` samples robots and configurations into problem tables (Parquet), ``graph`` turns a
batch of problems into the complete and partial distance graphs of the spec (2n + 4 nodes, known
distances and anchors), ``batch`` assembles graphs into model inputs, ``shards`` writes and checks
the per-DOF graph shards and their manifest, and ``io`` holds atomic, checksummed file writes.
"""
