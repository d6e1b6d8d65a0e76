"""modeldrop's control plane: contracts, decisions and cloud adapters shared by the functions and the CLI."""
