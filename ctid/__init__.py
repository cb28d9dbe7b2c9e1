"""ctid: CTI middleware for bank call centers."""
