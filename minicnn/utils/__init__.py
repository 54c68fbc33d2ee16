"""Tools around the engine: gradient checking, torch comparison, summaries, serialization."""
