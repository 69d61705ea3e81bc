"""qkdnet.keys — see DESIGN.md."""
