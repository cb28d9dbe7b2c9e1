"""A simulated Asterisk speaking real AMI and FastAGI over TCP."""
