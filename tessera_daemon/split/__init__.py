"""The split deployment: detector workers over Redis Streams (``tessera-daemon detector``).

``worker.py`` runs the consumer loop and serves HTTP; ``coordinator.py`` takes and gives back partition
leases and the fleet threshold; ``partition.py`` is one partition's pipeline, commits and checkpoints;
``eventlog.py`` is the fleet-wide event log; ``view.py`` merges the partitions' snapshots for the web
layer. The wire itself (codec, keys, Redis, leases) is ``transport/``.
"""
