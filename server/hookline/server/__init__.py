"""The hookline server: storage, job runner, delivery worker and gRPC API."""
