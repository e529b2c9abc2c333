"""Storage: tables, migrations and the repository that loads and persists pipeline state."""
