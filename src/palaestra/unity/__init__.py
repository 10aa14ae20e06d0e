"""Unity ML-Agents' wire protocol, spoken by palaestra without the mlagents packages.

`protocol` holds the gRPC messages (``communicator_objects``), built at import time so that any
protobuf runtime from 3.20 to 7.x can read and write them; `side_channels` holds the byte-level
side channels (engine configuration, environment parameters, stats, raw bytes) that ride inside
those messages. Importing this package imports neither: only ``google.protobuf`` is needed, and
only by `protocol`.
"""
