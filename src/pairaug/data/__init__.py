"""Data layer: the manifest schema, image loading, the phantom dataset, adapters and the labeler."""
