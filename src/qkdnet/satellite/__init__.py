"""qkdnet.satellite — see DESIGN.md."""
