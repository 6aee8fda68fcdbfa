"""Media a bot publishes, decoded and paced in real time: a synthetic pattern and tone, or a file."""
