"""Wire protocols: AMI client, FastAGI server, CTI server."""
