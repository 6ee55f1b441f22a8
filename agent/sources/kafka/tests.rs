//! The `kafka` source against a real Kafka-protocol broker (tansu on a free port).
