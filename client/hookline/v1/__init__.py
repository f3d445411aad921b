"""Generated protobuf messages and gRPC stubs for package hookline.v1.

Every other file in this folder is written by scripts/gen-protos; do not edit them.
"""
