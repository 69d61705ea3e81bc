"""qkdnet.quantum — see DESIGN.md."""
