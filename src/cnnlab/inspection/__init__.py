"""Looking inside a trained classifier: class activation maps, feature maps, filters, a per-layer summary."""
