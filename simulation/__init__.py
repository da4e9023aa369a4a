"""The whole federation on one machine with Flower's simulation engine."""
