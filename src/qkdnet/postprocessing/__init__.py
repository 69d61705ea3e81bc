"""qkdnet.postprocessing — see DESIGN.md."""
