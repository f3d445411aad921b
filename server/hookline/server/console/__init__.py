"""The web console (`hookline serve --console-port`): server-rendered pages to
see webhooks, deliveries and jobs and to act on them, for people signed in with
a management key. It talks to hookline only through the gRPC API, with that
person's key (rpc.py), so it sees and may do exactly what the key may."""

from .server import Console

__all__ = ["Console"]
