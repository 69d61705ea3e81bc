"""qkdnet.simulation — see DESIGN.md."""
