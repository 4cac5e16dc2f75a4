"""Adapters that embed the p2pos core in runtimes and apps: the trio node, the CLI."""
