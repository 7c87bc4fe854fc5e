"""Strategies the upload steps choose from params (discovery, metadata, data units, upload)."""
