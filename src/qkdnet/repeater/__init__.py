"""qkdnet.repeater — see DESIGN.md."""
