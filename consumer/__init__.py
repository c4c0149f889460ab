"""galleryrank's streaming service: Kafka in, downloads, decode, micro-batched
scoring, Redis state, offsets, dead letters, metrics and the CLI."""
