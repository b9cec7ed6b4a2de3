"""Software-engineering tasks made from real packages: bug injection, validation, SWE-bench-format files."""
