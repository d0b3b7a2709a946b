"""What a command does, above dispatch: run-and-report, the outcome's exit code and round lines."""
