"""One thin entry point per DVC stage: read, validate, call the core, write."""
