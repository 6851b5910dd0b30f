"""The process: the composition root, the command line, logging and systemd notify."""
