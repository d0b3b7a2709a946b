"""What a command does, above dispatch: each module is one command's work, called by ``cli.py`` (which only parses
and prints) and by benchmarks and tests."""
