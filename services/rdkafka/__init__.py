"""librdkafka (confluent-kafka) as the hot path's Kafka client, behind small asyncio adapters.

aiokafka stays where Faust needs it (the router's consumer group) and in tools; the producers and consumers
that carry every order (ingress, the router's transactions, the projector, the rebuild, the gateway's tail)
use these adapters. Decision 0016 says why and which traps were checked.
"""
