"""The command line (absl flags, one `define_flags`, `main`)."""
