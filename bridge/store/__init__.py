"""Storage: tables, migrations, the repository that loads and persists pipeline state (with
its row conversions in `rows`), the API's reads (`reads`) and writes (`admin`)."""
