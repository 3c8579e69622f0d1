"""Where bytes and records live, and how download links are signed."""
