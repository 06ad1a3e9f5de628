"""The self-contained HTML report of a store (plots embedded, tables also as CSV)."""
