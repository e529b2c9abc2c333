"""Storage: tables, migrations, the repository that loads and persists pipeline state (with
its row conversions in `rows`), the scheduled jobs' queries (`scans`), the classification of
database failures (`failures`), the API's reads (`reads`) and writes (`admin`)."""
