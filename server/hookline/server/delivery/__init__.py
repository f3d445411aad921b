"""The delivery worker: claims due deliveries, signs and sends them, records each attempt."""
