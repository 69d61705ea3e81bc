"""Sub-commands of the ``qkdnet`` CLI; each module exposes ``register(app: typer.Typer)``."""
