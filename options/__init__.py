"""Command-line options (argparse only; what they mean is documented in each help text)."""
