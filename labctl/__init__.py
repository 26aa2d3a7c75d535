"""labctl: the command line for test engineers, certifiers and admins."""
