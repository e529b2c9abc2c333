"""The rule language and the pure decision stages of the pipeline."""
