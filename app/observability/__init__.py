"""What an operator watches: Prometheus metrics and the JSON log lines."""
