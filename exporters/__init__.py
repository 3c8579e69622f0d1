"""Pure conversions: files in, files out."""
