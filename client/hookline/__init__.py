"""hookline: jobs and signed, retried, observable webhooks over gRPC."""
