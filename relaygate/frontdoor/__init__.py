"""Front doors: other vendors' APIs served over the chat pipeline."""
