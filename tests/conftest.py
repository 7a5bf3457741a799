"""Root conftest: broker fixtures are plain modules under tests/brokers/ re-exported here."""

from brokers.aeron import *  # noqa: F401,F403
from brokers.kafka import *  # noqa: F401,F403
from brokers.nats import *  # noqa: F401,F403
from brokers.nats_cluster import *  # noqa: F401,F403
from brokers.natscore import *  # noqa: F401,F403
