"""Loading and checking experiment folders: YAML with positions, JSON Schema, semantic rules."""
