"""qkdnet.cloud — see DESIGN.md."""
