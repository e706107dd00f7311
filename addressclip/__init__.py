"""AddressCLIP."""
