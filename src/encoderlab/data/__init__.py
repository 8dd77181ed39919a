"""Turning files on disk into documents, and the bundled quickstart corpus."""
