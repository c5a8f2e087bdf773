"""Every Redis key, stream and group name of the agent / detector split, in one place.

A partition is a cohort (the job or peer group whose shards are compared with each other), so a
cohort is never split across workers. Every per-partition key carries the partition token as a
Redis Cluster hash tag, ``<prefix>:{<token>}:...``, so a partition's stream, lease, checkpoint,
commit mark and window log live in one slot (Lua scripts may touch them together) while different
partitions spread over the masters of a Cluster. Fleet-wide keys have no tag.

==============================  ======  ==============================================================
key                             type    content
==============================  ======  ==============================================================
<p>:{<t>}:frames                stream  host entries of the partition (codec.py), MAXLEN ~ trimmed
<p>:{<t>}:lease                 string  "<worker>|<epoch>", SET NX PX, renewed by the heartbeat
<p>:{<t>}:epoch                 string  fencing counter, INCR on every fresh lease
<p>:{<t>}:checkpoint            string  engine/checkpoint.py blob (checksummed, versioned)
<p>:{<t>}:committed             string  last committed window index (idempotence mark)
<p>:{<t>}:windows               stream  one entry per committed window: window, frames, worker, epoch
<p>:{<t>}:topology              hash    agent id -> the partition's topology slice (contract 2 JSON)
<p>:partitions                  hash    partition token -> cohort name
<p>:agents                      hash    agent id -> {"shards", "partitions", "ts"} JSON
<p>:workers                     zset    worker id scored by its liveness deadline (unix ms)
<p>:firings                     stream  firings (contract 4 JSON), opened and resolved
<p>:deadletter                  stream  malformed entries with the reason
<p>:events                      stream  accepted cluster events: contract 3 JSON, source, metadata (eventlog.py)
==============================  ======  ==============================================================
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

_SAFE = re.compile(r"^[A-Za-z0-9._:@=+-]{1,100}$")


def partition_token(cohort: str) -> str:
    """A key-safe token for a cohort: the name itself when safe, else a stable digest of it."""
    if _SAFE.match(cohort):
        return cohort
    return "h-" + hashlib.sha256(cohort.encode()).hexdigest()[:20]


@dataclass(frozen=True, slots=True)
class Keys:
    prefix: str = "tessera"

    # ------------------------------------------------------------------- per partition (hash tagged)

    def _p(self, token: str, suffix: str) -> str:
        return f"{self.prefix}:{{{token}}}:{suffix}"

    def stream(self, token: str) -> str:
        return self._p(token, "frames")

    def lease(self, token: str) -> str:
        return self._p(token, "lease")

    def epoch(self, token: str) -> str:
        return self._p(token, "epoch")

    def checkpoint(self, token: str) -> str:
        return self._p(token, "checkpoint")

    def committed(self, token: str) -> str:
        return self._p(token, "committed")

    def windows(self, token: str) -> str:
        return self._p(token, "windows")

    def topology(self, token: str) -> str:
        return self._p(token, "topology")

    # ---------------------------------------------------------------------------------- fleet-wide

    @property
    def partitions(self) -> str:
        return f"{self.prefix}:partitions"

    @property
    def agents(self) -> str:
        return f"{self.prefix}:agents"

    @property
    def workers(self) -> str:
        return f"{self.prefix}:workers"

    @property
    def firings(self) -> str:
        return f"{self.prefix}:firings"

    @property
    def deadletter(self) -> str:
        return f"{self.prefix}:deadletter"

    @property
    def events(self) -> str:
        return f"{self.prefix}:events"

    def token_of_stream(self, stream: str) -> str | None:
        """The partition token of a partition stream key, or None."""
        head = f"{self.prefix}:{{"
        if stream.startswith(head) and stream.endswith("}:frames"):
            return stream[len(head) : -len("}:frames")]
        return None
