"""qkdnet.control — see DESIGN.md."""
