"""Dagster code location for shequ. Thin wiring only: every stage calls shequ.pipeline."""
