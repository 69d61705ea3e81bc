"""qkdnet.api — see DESIGN.md."""
